"""mask_secrets: every abbreviation the parser accepts is masked (parse position)."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from openvsm.masking import MASK, mask_secrets

SECRET = "hunter2xyz"


@pytest.mark.parametrize(
    "line",
    [
        f"username bob password {SECRET}",
        f"user bob pass {SECRET}",
        f"u bob p {SECRET} role network-admin",
        f"USERN bob PASSW 0 {SECRET}",
        f"username bob password 5 {SECRET}",
        f"  username   bob   pa   {SECRET}  ",
        f"username bob {SECRET}",  # not understood: everything after the name
    ],
)
def test_secret_is_masked(line: str) -> None:
    masked = mask_secrets(line)
    assert SECRET not in masked and MASK in masked
    assert "bob" in masked


def test_other_lines_and_words_are_kept() -> None:
    assert mask_secrets("vlan 10") == "vlan 10"
    assert mask_secrets("username bob password 0 s3cret role network-operator") == (
        "username bob password 0 ******** role network-operator"
    )
    # "password 0 role ...": the parser takes "0" for the password itself
    assert mask_secrets("username bob password 0 role x") == "username bob password ******** role x"


@given(
    st.sampled_from(["u", "us", "user", "username", "USER"]),
    st.sampled_from(["p", "pa", "pass", "passw", "password", "PASS"]),
    st.sampled_from(["", "0 ", "5 "]),
    st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=4, max_size=20),
)
def test_any_abbreviation_masks(user: str, pw: str, kind: str, secret: str) -> None:
    assume(secret.lower() not in ("role", "bob", "network-admin", MASK))
    line = f"{user} bob {pw} {kind}{secret} role network-admin"
    # The secret's own position is masked (a secret spelled like a keyword,
    # e.g. "user", still appears once as that keyword).
    words = mask_secrets(line).split()
    assert words[-3] == MASK and words.count(secret) == line.split().count(secret) - 1
