"""A seeded fault campaign (``openvsm chaos``) against a real loopback
deployment: the checker must find no violation and every fault must recover.

The default runs the first 50 faults of the seed (issue: a 50-fault seeded
campaign in ``make test``, under 5 minutes; 2 min 51 s measured alone), the
added fault kinds included (issue 11: copied-config VSMs and the quick-heal
split, checked against the seed's rules from the VEMs' side); a second test
runs only the added kinds.
``OPENVSM_CHAOS_FAULTS`` / ``OPENVSM_CHAOS_SEED`` change it;
``openvsm chaos --seed 20251125 --faults 50`` is the same run outside pytest
(docs/service-ha.md).
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from openvsm.lab.chaos import BASE_KINDS, EXTRA_KINDS, KINDS, run_campaign, schedule
from openvsm.lab.lab import Lab

pytestmark = pytest.mark.integration

SEED = int(os.environ.get("OPENVSM_CHAOS_SEED", "20251125"))
FAULTS = int(os.environ.get("OPENVSM_CHAOS_FAULTS", "50"))


def test_schedule_is_seeded_and_covers_every_kind() -> None:
    assert schedule(SEED, 50) == schedule(SEED, 50)
    assert schedule(SEED, 50) != schedule(SEED + 1, 50)
    assert {f.kind for f in schedule(SEED, 200)} == set(KINDS)
    # The added kinds do not change an old seed's faults, only shift them.
    old = [(f.kind, f.target, f.duration) for f in schedule(SEED, 40, BASE_KINDS)]
    new = [(f.kind, f.target, f.duration) for f in schedule(SEED, 80) if f.base_index]
    assert new[:40] == old


def test_seeded_campaign_has_no_violations(tmp_path: Path, make_lab: Callable[..., Lab]) -> None:
    # make_lab: its cleanup fails the test on processes leaked under tmp_path.
    out = io.StringIO()
    summary = run_campaign(tmp_path / "chaos", seed=SEED, faults=FAULTS, vems=2, out=out)
    report = out.getvalue()
    print(report)
    assert summary["faults"] == FAULTS, report
    assert summary["violations"] == [], f"seed {SEED}:\n{report}"
    assert summary["writes"].get("ok", 0) > FAULTS, report


def test_added_fault_kinds_keep_the_seed_rules(
    tmp_path: Path, make_lab: Callable[..., Lab]
) -> None:
    """Copies of a node's config beside the pair (same MAC, new MAC) and quick
    heals of a split: no module listed ok where it is not attached, every
    split-brain won by the side the VEMs were attached to, the pair undisturbed
    by a copy."""
    out = io.StringIO()
    summary = run_campaign(
        tmp_path / "chaos", seed=SEED, faults=4, vems=3, kinds=EXTRA_KINDS, out=out
    )
    report = out.getvalue()
    print(report)
    assert set(summary["by_kind"]) <= set(EXTRA_KINDS), report
    assert summary["violations"] == [], f"seed {SEED}:\n{report}"
