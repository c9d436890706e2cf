"""Replication stream cores (sans-IO): tail, snapshot, idempotence, overflow, epochs, frames."""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openvsm.errors import RemoteProtocolError
from openvsm.store.pss import Change, Op, Store
from openvsm.sync.stream import (
    Ack,
    ChangeMsg,
    FrameCodec,
    Hello,
    ReplicationReceiver,
    ReplicationSender,
    SyncState,
    Welcome,
)

SECRET = b"domain-secret"


@pytest.fixture
def tmp_path(tmp_path: Path) -> Iterator[Path]:
    """Stores on tmpfs when there is one: these tests exercise the stream, not fsync."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path
        return
    with tempfile.TemporaryDirectory(dir=shm, prefix="openvsm-sync-") as d:
        yield Path(d)


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[tuple[Store, Store]]:
    active = Store(tmp_path / "active.db", max_changes=50)
    standby = Store(tmp_path / "standby.db")
    yield active, standby
    active.close()
    standby.close()


def commit(store: Store, i: int, t: float | None = None) -> Change:
    return store.commit(
        [Op("vlan", str(i % 4000 + 1), {"id": i % 4000 + 1, "name": f"v{i}", "owner": "cli"})],
        user="admin",
        source="cli",
        command=f"vlan {i}",
        time=float(i) if t is None else t,
    )


class Link:
    """A sender and a receiver joined by an in-memory byte pipe."""

    def __init__(self, sender: ReplicationSender, receiver: ReplicationReceiver) -> None:
        self.sender, self.receiver = sender, receiver

    def connect(self) -> None:
        self.sender.connection_made()
        self.flow(to_active=self.receiver.connection_made())

    def flow(self, *, to_active: bytes = b"", to_standby: bytes = b"") -> None:
        while to_active or to_standby:
            if to_standby:
                to_active += self.receiver.receive(to_standby)
                to_standby = b""
            if to_active:
                to_standby = self.sender.receive(to_active)
                to_active = b""

    def commit(self, store: Store, i: int) -> Change:
        change = commit(store, i)
        self.flow(to_standby=self.sender.append(change))
        return change

    def disconnect(self) -> None:
        self.sender.connection_lost()
        self.receiver.connection_lost()


def session_codec(core: ReplicationSender | ReplicationReceiver) -> FrameCodec:
    """A codec under this connection's session key (frames as the proven peer sends them)."""
    return FrameCodec(core._handshake.session_key)


def link(active: Store, standby: Store, **kw: int) -> Link:
    sender = ReplicationSender(active, SECRET, epoch=3, **kw)
    receiver = ReplicationReceiver(standby, SECRET, epoch=3, boot_id=1)
    return Link(sender, receiver)


def test_tail_replication_in_order(stores: tuple[Store, Store]) -> None:
    active, standby = stores
    for i in range(1, 11):
        commit(active, i)
    ln = link(active, standby)
    assert ln.sender.state == SyncState.NONE and not ln.sender.must_wait
    ln.connect()
    assert ln.sender.tails_sent == 1 and ln.sender.snapshots_sent == 0
    assert ln.sender.status()["state"] == "hot" and ln.sender.must_wait
    for i in range(11, 200):
        ln.commit(active, i)
    assert ln.sender.acked_seq == active.last_seq == standby.last_seq == 199
    assert standby.digest() == active.digest()
    assert [c.seq for c in standby.changes_since(150)] == list(range(151, 200))
    assert [c.seq for c in ln.receiver.pop_applied()] == list(range(1, 200))
    assert ln.sender.unacked_bytes == 0


def test_change_resent_after_reconnect_is_applied_once(stores: tuple[Store, Store]) -> None:
    active, standby = stores
    ln = link(active, standby)
    ln.connect()
    c1 = ln.commit(active, 1)
    c2 = commit(active, 2)
    frame = ln.sender.append(c2)
    ln.receiver.receive(frame)  # applied, but the ack is lost with the connection
    ln.disconnect()
    assert ln.sender.acked_seq == 1
    ln.connect()  # tail from the standby's last seq: nothing is re-applied
    assert standby.last_seq == 2 and ln.sender.acked_seq == 2
    # a change re-sent anyway (e.g. queued before the reconnect) is applied once
    codec = ln.sender._codec
    ack = ln.receiver.receive(
        codec.encode(ChangeMsg(change=c1)) + codec.encode(ChangeMsg(change=c2))
    )
    assert ln.receiver.duplicates == 2
    assert session_codec(ln.sender).feed(ack) == [Ack(seq=2)]
    assert [e.seq for e in standby.accounting_log()] == [1, 2]
    assert standby.digest() == active.digest()


def test_snapshot_then_tail_equals_active(stores: tuple[Store, Store]) -> None:
    active, standby = stores
    for i in range(1, 301):  # the change log keeps 50: a new standby needs a snapshot
        commit(active, i)
    active.commit([Op("vlan", "5", None)], user="u", source="cli", command="no vlan 5", time=400.0)
    ln = link(active, standby, chunk_objects=7)
    ln.sender.connection_made()
    challenge = ln.receiver.connection_made()
    hello = ln.receiver.receive(ln.sender.receive(challenge))  # confirmation + Hello
    to_standby = ln.sender.receive(hello)
    assert ln.sender.state == SyncState.COLD
    late = commit(active, 1000)  # committed during the bulk sync: sent after the snapshot
    to_standby += ln.sender.append(late)
    ln.flow(to_standby=to_standby)
    assert ln.sender.snapshots_sent == 1
    assert ln.receiver.snapshots_loaded == 1
    assert ln.sender.status()["state"] == "hot"
    assert standby.last_seq == active.last_seq
    assert standby.digest() == active.digest()
    for i in range(1001, 1020):
        ln.commit(active, i)
    assert standby.digest() == active.digest()
    assert [e.seq for e in standby.accounting_log(10)] == [e.seq for e in active.accounting_log(10)]


def test_a_tail_bigger_than_the_store_is_sent_as_a_snapshot(
    stores: tuple[Store, Store],
) -> None:
    # 40 changes rewriting 4 VLANs: the log holds all of them (50 kept) but
    # replaying them costs ten times the 4 objects; a standby one change
    # behind still gets its one-change tail.
    active, standby = stores
    for k in range(1, 41):
        commit(active, k % 4, t=float(k))
    ln = link(active, standby, tail_floor_bytes=200)
    ln.connect()
    assert (ln.sender.tails_sent, ln.sender.snapshots_sent) == (0, 1)
    assert standby.digest() == active.digest() and standby.last_seq == 40
    ln.disconnect()
    commit(active, 1, t=41.0)
    ln.connect()
    assert (ln.sender.tails_sent, ln.sender.snapshots_sent) == (1, 1)
    assert standby.digest() == active.digest() and standby.last_seq == 41
    # the same history under the default floor (1 MiB) is a tail
    fresh = Store(standby.path.with_name("fresh.db"))
    try:
        ln2 = link(active, fresh)
        ln2.connect()
        assert (ln2.sender.tails_sent, ln2.sender.snapshots_sent) == (1, 0)
        assert fresh.digest() == active.digest()
    finally:
        fresh.close()


def test_divergent_standby_gets_a_snapshot(stores: tuple[Store, Store]) -> None:
    active, standby = stores
    for i in range(1, 6):
        c = commit(active, i)
        standby.apply_replicated(c)
    commit(standby, 99, t=5000.0)  # made on the standby while it was active (split-brain loser)
    commit(active, 6, t=6000.0)
    ln = link(active, standby)
    ln.connect()
    assert ln.sender.snapshots_sent == 1
    assert standby.digest() == active.digest()


def test_overflow_while_unreachable_resets_the_standby(stores: tuple[Store, Store]) -> None:
    active, standby = stores
    ln = link(active, standby, buffer_bytes=2000)
    ln.connect()
    ln.commit(active, 1)
    assert ln.sender.must_wait
    ln.disconnect()
    assert ln.sender.state == SyncState.NONE
    assert ln.sender.must_wait  # still attached: a flapping link holds writes
    for i in range(2, 60):
        assert ln.sender.append(commit(active, i)) == b""
        if ln.sender.out_of_sync:
            break
    assert ln.sender.out_of_sync and not ln.sender.must_wait and not ln.sender.attached
    assert ln.sender.status()["out_of_sync"] is True
    ln.connect()  # the reset standby comes back: bulk sync even though a tail would do
    assert ln.sender.snapshots_sent == 1
    assert ln.sender.state == SyncState.HOT and not ln.sender.out_of_sync
    assert standby.digest() == active.digest()


def test_mark_out_of_sync_forces_a_snapshot(stores: tuple[Store, Store]) -> None:
    active, standby = stores
    ln = link(active, standby)
    ln.connect()
    ln.commit(active, 1)
    ln.disconnect()
    ln.sender.mark_out_of_sync()
    assert ln.sender.out_of_sync and not ln.sender.must_wait
    commit(active, 2)
    ln.connect()
    assert ln.sender.snapshots_sent == 1 and not ln.sender.out_of_sync
    assert standby.digest() == active.digest()


def test_detach_stops_waiting(stores: tuple[Store, Store]) -> None:
    active, standby = stores
    ln = link(active, standby)
    ln.connect()
    assert ln.sender.must_wait
    ln.disconnect()
    ln.sender.detach()
    assert not ln.sender.must_wait
    assert ln.sender.append(commit(active, 1)) == b""
    assert ln.sender.unacked_bytes == 0


def test_standby_with_newer_epoch_is_refused(stores: tuple[Store, Store]) -> None:
    active, standby = stores
    sender = ReplicationSender(active, SECRET, epoch=3)
    receiver = ReplicationReceiver(standby, SECRET, epoch=9, boot_id=1)
    sender.connection_made()
    out = sender.receive(receiver.receive(sender.receive(receiver.connection_made())))
    assert sender.refused is not None and "epoch 9 is newer" in sender.refused
    assert sender.state == SyncState.NONE and not sender.must_wait
    with pytest.raises(RemoteProtocolError) as exc:
        receiver.receive(out)
    assert exc.value.reason == "refused"


def test_standby_refuses_an_older_active(stores: tuple[Store, Store]) -> None:
    _, standby = stores
    receiver = ReplicationReceiver(standby, SECRET, epoch=5, boot_id=1)
    active = ReplicationSender(standby, SECRET, epoch=4)
    active.connection_made()
    receiver.receive(active.receive(receiver.connection_made()))
    out = receiver.receive(session_codec(receiver).encode(Welcome(mode="tail", epoch=4)))
    assert receiver.is_refused and "older" in (receiver.refused or "")
    assert out  # a Refuse frame for the active


def test_gap_is_a_protocol_error(stores: tuple[Store, Store]) -> None:
    active, standby = stores
    ln = link(active, standby)
    ln.connect()
    commit(active, 1)
    c2 = commit(active, 2)
    with pytest.raises(RemoteProtocolError) as exc:
        ln.receiver.receive(session_codec(ln.sender).encode(ChangeMsg(change=c2)))
    assert exc.value.reason == "gap"
    assert standby.last_seq == 0


def test_unexpected_messages(stores: tuple[Store, Store]) -> None:
    active, standby = stores
    ln = link(active, standby)
    ln.sender.connection_made()
    ln.receiver.receive(ln.sender.receive(ln.receiver.connection_made()))
    with pytest.raises(RemoteProtocolError, match="unexpected"):
        ln.receiver.receive(session_codec(ln.receiver).encode(Ack(seq=1)))
    ln.disconnect()
    sender, receiver = ln.sender, ln.receiver
    sender.connection_made()
    hello = receiver.receive(sender.receive(receiver.connection_made()))
    sender.receive(hello)
    codec = session_codec(sender)
    with pytest.raises(RemoteProtocolError, match="second Hello"):
        sender.receive(codec.encode(Hello(last_seq=0, epoch=1, boot_id=1)))
    ln.disconnect()
    sender.connection_made()
    sender.receive(receiver.receive(sender.receive(receiver.connection_made())))
    with pytest.raises(RemoteProtocolError, match="bad_ack"):
        sender.receive(session_codec(sender).encode(Ack(seq=999)))


# --- frames ----------------------------------------------------------------------


def test_frames_split_anywhere() -> None:
    codec = FrameCodec(SECRET)
    data = b"".join(codec.encode(Ack(seq=n)) for n in range(20))
    rx = FrameCodec(SECRET)
    got = []
    for i in range(0, len(data), 3):
        got += rx.feed(data[i : i + 3])
    assert got == [Ack(seq=n) for n in range(20)]
    assert rx.pending == 0
    rx.feed(codec.encode(Ack(seq=1))[:-5])
    assert rx.pending > 0  # truncated frame: the adapter counts it on close


def test_a_read_of_many_frames_and_a_partial_one() -> None:
    """One feed of a hot stream's read: every whole frame once, in order, and the
    partial last frame kept (whole, from its first byte) for the next read."""
    codec = FrameCodec(SECRET)
    frames = [codec.encode(Ack(seq=n)) for n in range(1001)]
    half = len(frames[-1]) // 2
    rx = FrameCodec(SECRET)
    got = rx.feed(b"".join(frames[:-1]) + frames[-1][:half])
    assert got == [Ack(seq=n) for n in range(1000)]
    assert rx.pending == half
    assert rx.feed(frames[-1][half:]) == [Ack(seq=1000)] and rx.pending == 0


def test_bad_frames_are_remote_errors() -> None:
    codec = FrameCodec(SECRET)
    good = codec.encode(Ack(seq=7))
    flipped = bytearray(good)
    flipped[6] ^= 0x01
    with pytest.raises(RemoteProtocolError) as exc:
        FrameCodec(SECRET).feed(bytes(flipped))
    assert exc.value.reason == "bad_tag"
    with pytest.raises(RemoteProtocolError) as exc:
        FrameCodec(b"other secret").feed(good)
    assert exc.value.reason == "bad_tag"
    with pytest.raises(RemoteProtocolError) as exc:
        FrameCodec(SECRET, max_frame=1000).feed(struct.pack("!I", 5000))
    assert exc.value.reason == "too_large"
    body = struct.pack("!I", 3) + b"\xc1\xc1\xc1"  # authenticated but not a message
    tag = hmac.new(SECRET, body, hashlib.sha256).digest()[:16]
    with pytest.raises(RemoteProtocolError) as exc:
        FrameCodec(SECRET).feed(body + tag)
    assert exc.value.reason == "malformed"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_garbage_never_escapes_as_another_exception(data: bytes) -> None:
    codec = FrameCodec(SECRET, max_frame=1 << 16)
    try:
        codec.feed(data)
    except RemoteProtocolError:
        pass


def _module_change(store: Store, t: float) -> Change:
    # vemmgr's bookkeeping: state, not configuration (leaves last_config_time)
    body = {"module": 3, "host_uuid": "h1", "status": "ok"}  # the body's key is "module"
    return store.commit(
        [Op("module", "h1", body)], user="vemmgr", source="vemmgr", command="m", time=t
    )


def test_reconnect_after_module_bookkeeping_is_a_tail(stores: tuple[Store, Store]) -> None:
    # The standby proves its history with the time of its last change of any
    # source; a VEM attach as the last change must not cost a bulk sync.
    active, standby = stores
    ln = link(active, standby)
    ln.connect()
    ln.commit(active, 1)
    ln.flow(to_standby=ln.sender.append(_module_change(active, 50.0)))
    assert standby.get_fact("last_config_time") == 1.0
    ln.disconnect()
    ln.connect()
    assert (ln.sender.tails_sent, ln.sender.snapshots_sent) == (2, 0)


def test_reconnect_after_a_snapshot_is_a_tail(stores: tuple[Store, Store]) -> None:
    active, standby = stores
    for i in range(1, 302):  # beyond the change log (50 kept): the first sync is a snapshot
        commit(active, i)
    _module_change(active, 500.0)
    ln = link(active, standby)
    ln.connect()
    assert ln.sender.snapshots_sent == 1
    assert standby.get_fact("last_config_time") == 301.0
    ln.disconnect()
    ln.connect()
    assert (ln.sender.tails_sent, ln.sender.snapshots_sent) == (1, 1)
    assert standby.digest() == active.digest()
