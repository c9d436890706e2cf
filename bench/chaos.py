"""Fault-campaign benchmark: ``openvsm chaos`` with a large fault count.

Runs a seeded campaign (docs/service-ha.md) against a loopback deployment and
prints, besides each fault's line, a summary: faults by kind, violations (each
with the seed to replay it), recovery time percentiles and write outcomes.

    .venv/bin/python bench/chaos.py --faults 1000 --seed 7 --json chaos-1000.json
    .venv/bin/python bench/chaos.py --faults 50            # random seed, printed
"""

from __future__ import annotations

import sys

from openvsm.lab.chaos import cli_main

if __name__ == "__main__":
    sys.exit(cli_main(sys.argv[1:] or ["--faults", "1000"]))
