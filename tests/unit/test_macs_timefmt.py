"""The one MAC helper and the one display-timestamp helper."""

from __future__ import annotations

import re
import time

import pytest

from openvsm.macs import dotted_mac, format_mac, is_mac, is_multicast, local_unicast, parse_mac
from openvsm.timefmt import display_time


def test_a_mac_round_trips_in_lower_case() -> None:
    raw = parse_mac("02:00:5E:10:00:01")
    assert raw == bytes([0x02, 0x00, 0x5E, 0x10, 0x00, 0x01])
    assert format_mac(raw) == "02:00:5e:10:00:01"
    assert dotted_mac("02:00:5e:10:00:01") == "0200.5e10.0001"


@pytest.mark.parametrize(
    "text", ["", "02:00:5e:10:00", "02:00:5e:10:00:01:02", "2:00:5e:10:00:01", "02:00:5e:10:00:zz"]
)
def test_what_is_not_a_mac_is_refused_by_name(text: str) -> None:
    assert not is_mac(text)
    with pytest.raises(ValueError, match="invalid MAC address"):
        parse_mac(text)


def test_local_unicast_sets_the_local_bit_and_clears_the_group_bit() -> None:
    mac = local_unicast(b"\xff" * 8)
    assert mac == "fe:ff:ff:ff:ff:ff"
    assert not is_multicast(mac) and is_multicast("01:00:5e:00:00:01")


def test_display_time_is_the_cli_output_format() -> None:
    t = time.mktime((2012, 9, 11, 18, 59, 17, 0, 0, -1))
    assert display_time(t) == "2012-Sep-11 18:59:17"
    assert re.fullmatch(r"\d{4}-[A-Z][a-z]{2}-\d\d \d\d:\d\d:\d\d", display_time(0.0))
