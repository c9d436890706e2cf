"""Every benchmark names its same-run baseline and prints ratios to it (issue 15 point 5)."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

from openvsm.lab import benchfmt

BENCH = Path(__file__).resolve().parents[2] / "bench"
BENCHES = sorted(p for p in BENCH.glob("*.py") if not p.name.startswith("_"))


def load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    sys.path.insert(0, str(BENCH))  # as when run as a script: a bench may import another
    try:
        spec.loader.exec_module(mod)  # a bench runs only under __main__
    finally:
        del sys.modules[spec.name]
        sys.path.remove(str(BENCH))
    return mod


def test_there_are_benches() -> None:
    assert {"api", "commit", "chaos", "vem_scale"} <= {p.stem for p in BENCHES}


@pytest.mark.parametrize("path", BENCHES, ids=lambda p: p.stem)
def test_each_bench_prints_a_ratio_to_a_same_run_baseline(path: Path) -> None:
    mod = load(path)
    baseline = getattr(mod, "SAME_RUN_BASELINE", None)
    assert isinstance(baseline, str) and len(baseline) > 10, f"{path.name}: no SAME_RUN_BASELINE"
    assert getattr(mod, "same_run_ratio", None) is benchfmt.same_run_ratio, path.name
    assert "same_run_ratio(" in path.read_text(), f"{path.name} never prints a same-run ratio"
    assert callable(getattr(mod, "main", None)) or "cli_main" in vars(mod), path.name


def test_the_ratio_line_format() -> None:
    line = benchfmt.same_run_ratio("16-way ops/s, HA / no standby", 800.0, 1000.0, "no standby")
    assert re.fullmatch(
        r"  same-run ratio 16-way ops/s, HA / no standby: 800 / no standby 1000 = x0\.80", line
    )
    assert benchfmt.same_run_ratio("x", 1.0, 0.0, "zero").endswith("n/a (baseline 0)")
