"""Remote management cores on virtual time: login failure limits, the shared
management address state machine, SSH key parsing and the [ssh]/[mgmt] config."""

from __future__ import annotations

import asyncio
import base64
import struct

import pytest

from openvsm.cfgmgr.configsession import parse_ssh_public_key
from openvsm.config import ConfigError, node_config_from_dict
from openvsm.mgmt.address import (
    AddAddress,
    AddressCore,
    Holding,
    RemoveAddress,
    SendGarp,
    garp_frames,
)
from openvsm.passwords import FailureLimiter, PasswordGate, Verdict, hash_password


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _gate(clock: Clock, max_failures: int, workers: int = 1, max_pending: int = 8) -> PasswordGate:
    limiter = FailureLimiter(max_failures=max_failures, window_s=60.0, clock=clock)
    return PasswordGate(
        lambda _user: None, workers=workers, max_pending=max_pending, limiter=limiter
    )


def test_gate_limits_source_and_user_until_failures_age_out() -> None:
    clock = Clock()
    gate = _gate(clock, 3)
    for _ in range(3):
        assert not gate.limited("admin", "10.0.0.1")
        gate.failed("admin", "10.0.0.1")
    assert gate.limited("admin", "10.0.0.1")
    assert gate.limited("admin", "10.0.0.2")  # the user is limited from anywhere
    assert gate.limited("bob", "10.0.0.1")  # and the source for any user
    assert not gate.limited("bob", "10.0.0.2")
    clock.t += 60.1
    assert not gate.limited("admin", "10.0.0.1")
    gate.close()


def test_gate_success_clears_the_user_not_the_source() -> None:
    gate = _gate(Clock(), 2)
    gate.failed("admin", "10.0.0.1")
    gate.failed("admin", "10.0.0.1")
    gate.succeeded("admin")
    assert not gate.limited("admin", "10.0.0.9")
    assert gate.limited("someone", "10.0.0.1")
    gate.close()


def test_limiter_memory_is_bounded() -> None:
    limiter = FailureLimiter(max_failures=2, window_s=60.0, clock=Clock(), max_keys=10)
    for i in range(1000):
        limiter.fail(f"src:10.0.{i // 256}.{i % 256}")
        limiter.fail(f"user:user{i}")
    assert len(limiter) <= 10


def test_ssh_password_check_constant_work_and_busy() -> None:
    async def run() -> None:
        gate = _gate(Clock(), 100, workers=1, max_pending=1)
        stored = hash_password("right-pass")
        src = "10.0.0.1"
        assert await gate.check_stored("bob", stored, "right-pass", source=src) is Verdict.OK
        assert await gate.check_stored("bob", stored, "wrong", source=src) is Verdict.WRONG
        # Unknown user: the dummy hash is checked (never OK), at the same cost.
        assert await gate.check_stored("eve", None, "x", source=src) is Verdict.WRONG
        assert gate.counters.unknown_user == 1
        first = asyncio.create_task(gate.check_stored("bob", stored, "x", source=src))
        await asyncio.sleep(0)
        assert await gate.check_stored("ann", stored, "y", source=src) is Verdict.LIMITED
        assert gate.counters.busy == 1
        assert await first is Verdict.WRONG
        gate.close()

    asyncio.run(run())


def test_address_taken_when_active_with_two_garp_bursts() -> None:
    core = AddressCore()
    assert core.on_status(0.0, "initializing", False) == []
    effects = core.on_status(10.0, "active", False)
    assert effects == [AddAddress(), SendGarp(0)]
    assert core.state is Holding.HELD
    sent = [0]
    t = 10.0
    while (deadline := core.next_deadline()) is not None:
        t = deadline
        sent += [e.index for e in core.on_timer(t) if isinstance(e, SendGarp)]
    assert sent == list(range(10))
    assert t == pytest.approx(10.0 + 1.0 + 4 * 0.2)


def test_address_released_on_reloading_standby_and_stop_and_garps_cancelled() -> None:
    core = AddressCore()
    core.on_status(0.0, "active", False)
    assert core.on_status(0.1, "reloading", False) == [RemoveAddress()]
    assert core.next_deadline() is None
    assert core.on_status(0.2, "standby", False) == []
    core.on_status(1.0, "active", False)
    assert core.stop() == [RemoveAddress()]
    assert core.stop() == []


def test_address_split_brain_waits_for_the_outcome_and_winner_announces_again() -> None:
    core = AddressCore()
    # Became active while a resolution is pending: wait.
    assert core.on_status(0.0, "active", True) == []
    assert core.state.value == "released"
    assert core.on_status(1.0, "active", False)[0] == AddAddress()
    while (d := core.next_deadline()) is not None:
        core.on_timer(d)
    # Held when a resolution starts: kept; the winner announces again.
    assert core.on_status(5.0, "active", True) == []
    assert core.state.value == "held"
    assert core.on_status(6.0, "active", False) == [SendGarp(0)]
    assert core.announcements == 2
    # A loser reloads: released.
    core.on_status(7.0, "active", True)
    assert core.on_status(7.5, "reloading", True) == [RemoveAddress()]


def test_garp_frames() -> None:
    mac = bytes.fromhex("020000000001")
    ip = bytes([10, 1, 0, 10])
    request, reply = garp_frames(mac, ip)
    for frame, op in ((request, 1), (reply, 2)):
        assert len(frame) == 60
        assert frame[:6] == b"\xff" * 6 and frame[6:12] == mac
        assert struct.unpack("!H", frame[12:14])[0] == 0x0806
        assert struct.unpack("!H", frame[20:22])[0] == op
        assert frame[22:28] == mac and frame[28:32] == ip and frame[38:42] == ip


def _key_blob(kind: str) -> str:
    raw = len(kind).to_bytes(4, "big") + kind.encode() + b"\x00\x00\x00\x20" + b"k" * 32
    return base64.b64encode(raw).decode()


def test_parse_ssh_public_key() -> None:
    blob = _key_blob("ssh-ed25519")
    assert parse_ssh_public_key(f"ssh-ed25519 {blob} me@host") == f"ssh-ed25519 {blob}"
    assert parse_ssh_public_key(f"ssh-rsa {blob}") is None  # blob names another type
    assert parse_ssh_public_key("ssh-ed25519 not-base64!") is None
    assert parse_ssh_public_key("ssh-ed25519") is None
    assert parse_ssh_public_key(f"ssh-dss {blob}") is None


BASE = {
    "node": {
        "domain_id": 1,
        "role": "primary",
        "secret": "s" * 16,
        "data_dir": "d",
        "run_dir": "r",
    },
    "interfaces": {
        "control": {"local": "127.0.0.1:1", "peer": "127.0.0.1:2"},
        "mgmt": {"local": "127.0.0.1:3", "peer": "127.0.0.1:4"},
    },
    "vem": {"listen": "127.0.0.1:5"},
}


def test_config_ssh_and_shared_mgmt() -> None:
    cfg = node_config_from_dict(BASE)
    assert cfg.ssh is None and cfg.shared_mgmt is None
    doc = {
        **BASE,
        "ssh": {"listen": ["127.0.0.1:2222"], "host_key": "key", "login_delay_ms": 500},
        "mgmt": {"address": "10.1.0.10/24", "device": "mgmt0"},
    }
    cfg = node_config_from_dict(doc)
    assert cfg.ssh is not None and cfg.ssh.login_delay == 0.5
    assert cfg.shared_mgmt is not None and cfg.shared_mgmt.ip == "10.1.0.10"
    assert cfg.shared_mgmt.ssh_port == 22
    for bad in (
        {"mgmt": {"address": "10.1.0.10", "device": "mgmt0"}},
        {"mgmt": {"address": "nonsense/24", "device": "mgmt0"}},
        {"mgmt": {"address": "10.1.0.10/24", "device": "a/b"}},
        {"ssh": {"listen": [], "host_key": "k"}},
        {"ssh": {"listen": ["127.0.0.1:22"]}},
    ):
        with pytest.raises(ConfigError):
            node_config_from_dict({**BASE, **bad})


def test_username_sshkey_config_and_running_config_replay() -> None:
    from openvsm.cfgmgr.configsession import ConfigSession, Mode
    from openvsm.store.runningconfig import MemoryView, running_config_lines

    view = MemoryView()

    def run(line: str) -> str | None:
        result = ConfigSession(view, mode=Mode.CONFIG).execute(line)
        if result.error is None:
            view.apply(result.ops)
        return result.error

    blob = _key_blob("ssh-ed25519")
    assert run(f'username ghost sshkey "ssh-ed25519 {blob}"') is not None  # no such user
    assert run("username bob password s3cret role network-admin") is None
    assert run(f'username bob sshkey "ssh-ed25519 {blob} bob@laptop"') is None
    bob = view.get("user", "bob")
    assert bob is not None and bob["sshkey"] == f"ssh-ed25519 {blob}"
    assert run("username bob password other") is None  # the key stays
    assert (view.get("user", "bob") or {}).get("sshkey") == f"ssh-ed25519 {blob}"
    error = run('username bob sshkey "ssh-ed25519 AAAA"')
    assert error is not None and "Invalid SSH public key" in error
    lines = running_config_lines(view)
    assert f'username bob sshkey "ssh-ed25519 {blob}"' in lines
    replay = MemoryView()
    for line in lines:
        if line.startswith("username"):
            result = ConfigSession(replay, mode=Mode.CONFIG).execute(line)
            assert result.error is None, (line, result.error)
            replay.apply(result.ops)
    assert replay.get("user", "bob") == view.get("user", "bob")
    assert run("no username bob sshkey") is None
    assert "sshkey" not in (view.get("user", "bob") or {})


def test_checker_two_address_holders() -> None:
    from openvsm.lab.checker import AddressSample, check_address_holders

    both = frozenset({"primary", "secondary"})
    one = frozenset({"primary"})
    ok = [
        AddressSample(0.0, one),
        AddressSample(1.0, both, partitioned=True),  # a split: both may hold it
        AddressSample(5.0, both, partitioned=True),
        AddressSample(6.0, both),  # healed at 6.0, resolution under way
        AddressSample(6.8, both),
        AddressSample(7.0, one),
    ]
    assert check_address_holders(ok, bound=1.0) == []
    late = [*ok[:4], AddressSample(7.5, both)]
    found = check_address_holders(late, bound=1.0, label="round 3")
    assert [v.kind for v in found] == ["two_address_holders"]
    assert "round 3" in found[0].detail
    # Never partitioned: two holders past the bound from the first sample.
    assert check_address_holders([AddressSample(0.0, one), AddressSample(2.0, both)], bound=1.0)
