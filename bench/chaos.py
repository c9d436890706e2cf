"""Fault-campaign benchmark: ``openvsm chaos`` with a large fault count.

Runs a seeded campaign (docs/service-ha.md) against a loopback deployment and
prints, besides each fault's line, a summary: faults by kind, violations (each
with the seed to replay it), recovery time percentiles and write outcomes;
then the recovery tail (p99) against the campaign's median recovery.

    .venv/bin/python bench/chaos.py --faults 1000 --seed 7 --json chaos-1000.json
    .venv/bin/python bench/chaos.py --faults 50            # random seed, printed
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from openvsm.lab.benchfmt import same_run_ratio
from openvsm.lab.chaos import cli_main

SAME_RUN_BASELINE = "the median recovery time of the same campaign (its p99 against it)"


def main(argv: list[str]) -> int:
    argv = argv or ["--faults", "1000"]
    if "-h" in argv or "--help" in argv:
        return cli_main(argv)
    with tempfile.TemporaryDirectory(prefix="openvsm-chaos-bench-") as tmp:
        out = Path(tmp) / "summary.json"
        if "--json" in argv:
            out = Path(argv[argv.index("--json") + 1])
        else:
            argv = [*argv, "--json", str(out)]
        rc = cli_main(argv)
        if out.exists():
            rec = json.loads(out.read_text()).get("recovery_s", {})
            if rec.get("p50") and rec.get("p99") is not None:
                print(same_run_ratio("recovery p99 s", rec["p99"], rec["p50"], "p50"))
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
