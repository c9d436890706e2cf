"""The benchmarks' ratio line (bench/*.py, docs/performance.md).

Every benchmark prints its figures and, for each headline figure, its ratio
to a baseline measured in the same run (figures on a shared machine move
from run to run; a ratio of two figures of one run moves much less). Each
bench module names that baseline in ``SAME_RUN_BASELINE`` and prints
``same_run_ratio`` lines; tests/unit/test_bench_ratios.py checks both.
"""

from __future__ import annotations

RATIO_MARK = "same-run ratio"


def same_run_ratio(label: str, value: float, baseline: float, baseline_label: str) -> str:
    """``  same-run ratio LABEL: VALUE / BASELINE_LABEL BASELINE = xR``."""
    r = f"x{value / baseline:.2f}" if baseline else "n/a (baseline 0)"
    return f"  {RATIO_MARK} {label}: {value:.4g} / {baseline_label} {baseline:.4g} = {r}"
