"""FreshnessFilter: replays, reordering, old boots and epoch jumps (issue 12 point 2)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from openvsm.wire.codec import Frame
from openvsm.wire.freshness import (
    BOOT_HORIZON,
    EPOCH_LIMIT,
    EPOCH_STEP,
    WINDOW,
    FreshnessFilter,
    OutstandingRequests,
)
from openvsm.wire.messages import Discovery, HeartbeatRequest, LivenessAck, SenderRole

MAC = "02:00:00:00:00:02"
T0 = 1_700_000_000_000_000  # a wall clock in microseconds, as hamgr numbers frames


def hb(seq: int, *, boot: int = 7, epoch: int = 3, mac: str = MAC) -> Frame:
    msg = HeartbeatRequest(state="active", boot_id=boot)
    return Frame(role=SenderRole.SECONDARY, mac=mac, epoch=epoch, seq=seq, msg=msg)


def test_duplicates_and_replays_are_refused_reordering_is_not() -> None:
    f = FreshnessFilter()
    assert f.check(hb(T0 + 10)) is None
    assert f.check(hb(T0 + 10)) == "replay"
    assert f.check(hb(T0 + 12)) is None
    assert f.check(hb(T0 + 9)) == "replay"  # from before the first frame heard: withheld
    assert f.check(hb(T0 + 11)) is None  # late, from the other interface
    assert f.check(hb(T0 + 11)) == "replay"
    assert f.check(hb(T0 + 12 + WINDOW)) is None
    assert f.check(hb(T0 + 12)) == "replay"  # below the window now


def test_frames_without_boot_follow_the_newest_boot() -> None:
    f = FreshnessFilter()
    assert f.check(hb(T0)) is None
    ack = Frame(
        role=SenderRole.SECONDARY,
        mac=MAC,
        epoch=3,
        seq=T0 + 1,
        msg=LivenessAck(nonce=1, state="active"),
    )
    assert f.check(ack) is None
    assert f.check(ack) == "replay"


def test_an_old_boot_is_refused_a_new_one_or_a_copy_is_not() -> None:
    f = FreshnessFilter()
    old = Frame(
        role=SenderRole.SECONDARY,
        mac=MAC,
        epoch=2,
        seq=T0,
        msg=Discovery(state="initializing", boot_id=5),
    )
    assert f.check(old) is None
    now = T0 + 2 * BOOT_HORIZON
    assert f.check(hb(now, boot=7)) is None  # the peer rebooted since
    assert f.check(old) == "replay"
    replay_of_old_boot = Frame(
        role=SenderRole.SECONDARY,
        mac=MAC,
        epoch=2,
        seq=T0 + 5,
        msg=Discovery(state="active", boot_id=4),
    )
    assert f.check(replay_of_old_boot) == "replay"
    # a copy of the VSM started now (another boot, same MAC) is fresh: the engine judges it
    assert f.check(hb(now + 3, boot=99)) is None
    assert f.check(hb(now + 4, boot=7)) is None  # and the real peer keeps its own window


def test_epochs_are_bounded() -> None:
    f = FreshnessFilter()
    assert f.check(hb(T0, epoch=EPOCH_LIMIT + 1)) == "epoch_limit"
    assert f.check(hb(T0, epoch=10)) is None
    assert f.check(hb(T0 + 1, epoch=10 + EPOCH_STEP + 1)) == "epoch_jump"
    assert f.check(hb(T0 + 1, epoch=11)) is None  # the refused frame left no trace
    assert f.check(hb(T0 + 2, epoch=(1 << 64) - 1)) == "epoch_limit"


def test_the_sender_table_is_bounded() -> None:
    f = FreshnessFilter()
    for i in range(2000):
        f.check(hb(T0 + i, mac=f"02:00:00:00:{i >> 8:02x}:{i & 255:02x}"))
    assert len(f) <= 256


@given(st.lists(st.integers(0, 200), min_size=1, max_size=60), st.randoms(use_true_random=False))
def test_no_replayed_or_reordered_capture_is_accepted_twice(
    offsets: list[int], rnd: object
) -> None:
    """Whatever order captured frames come back in, each is accepted at most once."""
    f = FreshnessFilter()
    frames = [hb(T0 + o) for o in sorted(set(offsets))]
    for fr in frames:
        assert f.check(fr) is None
    replay = frames * 2
    rnd.shuffle(replay)  # type: ignore[attr-defined]
    assert all(f.check(fr) is not None for fr in replay)


def test_a_response_must_echo_an_outstanding_request() -> None:
    out = OutstandingRequests(keep=4)
    for seq in (10, 11, 12):
        out.sent(seq)
    assert out.answered(11)
    assert not out.answered(11)  # answered already: a replay
    assert not out.answered(99)  # never sent
    for seq in range(13, 20):
        out.sent(seq)
    assert not out.answered(10) and len(out) == 4  # bounded: the oldest are forgotten
    assert out.answered(19)
