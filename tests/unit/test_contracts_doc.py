"""docs/CONTRACTS.md is generated from the contract Structs: it fails here
when the file and the Structs (or docs/CONTRACTS.in.md) differ. Regenerate
with ``python -m openvsm.contracts.doc > docs/CONTRACTS.md``."""

from __future__ import annotations

from pathlib import Path

import pytest

from openvsm.contracts import cfgmgr, doc, hamgr

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_contracts_md_is_the_generated_text() -> None:
    assert doc.TEMPLATE == DOCS / "CONTRACTS.in.md"
    generated = doc.render()
    assert "@@" not in generated
    assert (DOCS / "CONTRACTS.md").read_text() == generated, (
        "docs/CONTRACTS.md differs from the Structs: run "
        "`python -m openvsm.contracts.doc > docs/CONTRACTS.md`"
    )


@pytest.mark.parametrize(
    "name",
    [
        "peer_lost",
        "boot_id",
        "`fence`",
        "`changes_since_time`",
        "`sync_status`",
        "`set_module_count`",
    ],
)
def test_the_names_the_code_uses_are_documented(name: str) -> None:
    assert name in doc.render()


def test_a_field_comment_becomes_its_description() -> None:
    notes = doc.field_notes(hamgr.HaStatus)
    assert notes["peer_lost"][2].startswith("The active lost its standby")
    assert notes["state"][:2] == ("HaStateName", '"initializing"')
    assert "refused" not in doc.field_notes(cfgmgr.Commit)  # docstring lines are no fields
