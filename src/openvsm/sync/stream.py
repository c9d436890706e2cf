"""Replication stream from the active to the standby, sans-IO (DESIGN §4).

Owns the synchronisation protocol (bytes in, bytes out, no sockets, no
clock): framing and authentication, the active's ``ReplicationSender`` and
the standby's ``ReplicationReceiver``. ``openvsm.sync.transport`` runs them
over TCP.

Frames: ``len u32 | msgpack payload | tag 16s``; the tag is HMAC-SHA256 over
length and payload, keyed by the domain secret, truncated to 16 bytes. A
frame that is too large, unauthenticated or malformed raises
``RemoteProtocolError`` (the peer's fault: the adapter counts it and closes
the connection); calling a core in a way its state forbids raises
``LocalProtocolError`` (our bug).

Protocol::

    standby                               active
    Hello(last_seq, epoch, boot_id, last_change_time) ->
                                       <- Welcome(mode="tail", epoch)
                                       <- Change(seq=last_seq+1) ... (then live)
                                  or   <- Welcome(mode="snapshot", epoch)
                                       <- SnapshotChunk ... SnapshotEnd(last_seq)
                                       <- Change(seq > snapshot) ... (then live)
    Ack(seq) ->   (after applying, cumulative, idempotent)
                                  or   <- Refuse(reason)  (standby epoch newer)

The active sends a tail when the standby's history is a prefix of its own
(same change at ``last_seq``, judged by its time), the change log still
holds everything after it and that tail is not bigger than a snapshot
(``TAIL_FLOOR_BYTES``: an empty or far-behind standby gets the snapshot, one
transaction instead of a replay of the whole log); otherwise, and always
after an out-of-sync reset, a snapshot.

Sender progress (``SyncState``, reported to hamgr): ``NONE`` no standby
connection (or no Hello yet), ``COLD`` snapshot sent and not yet applied,
``WARM`` catching up on the tail, ``HOT`` in sync and streaming::

    NONE --Hello/tail--> WARM --Ack(target)--> HOT
    NONE --Hello/snapshot--> COLD --Ack(snapshot seq)--> WARM ...
    any --connection_lost--> NONE

Attachment (``attached``, ``must_wait``): the standby becomes attached when
the sender first reaches ``HOT``; it stays attached across a reconnect (the
unacked changes are tracked against ``buffer_bytes``) and is detached by
``detach()`` (hamgr declared it absent) or by ``out_of_sync``: the unacked
changes would exceed ``buffer_bytes``, or the caller gave up on it
(``mark_out_of_sync``). Then the standby must be reset and bulk-synced.
Whether a write is acknowledged is not decided here: the write-ack gate
(``openvsm.cfgmgr.ackgate``) does, from the acks and this progress.

Pipelined commit: the active appends a change when its seq is assigned,
before it is durable in its own store (``ChangeSource.head_seq`` is the
newest assigned seq, ``changes_since`` includes the changes in flight).
A snapshot carries the durable state; the changes after it (in flight or
committed since) follow it at once.
"""

from __future__ import annotations

import collections
import contextlib
import enum
import hashlib
import hmac
import struct
from collections.abc import Sequence
from typing import Final, Protocol

import msgspec

from openvsm.store.pss import Change, ChangeLogTrimmed, Op, Snapshot, Store, StoreError
from openvsm.wire.messages import AccountingEntry

TAG_LEN: Final = 16
MAX_FRAME: Final = 64 * 1024 * 1024
DEFAULT_BUFFER_BYTES: Final = 16 * 1024 * 1024
DEFAULT_CHUNK_OBJECTS: Final = 500
# A tail of more encoded ops than this (and more than half the store's bytes)
# is sent as a snapshot instead: one transaction on the standby, not one
# replay of every change ever made (an empty or far-behind standby).
TAIL_FLOOR_BYTES: Final = 1024 * 1024
_LEN = struct.Struct("!I")


_I64_MAX: Final = 2**63 - 1  # SQLite's INTEGER; msgspec decodes up to 2**64 - 1


def _check_ints(what: str, *values: int) -> None:
    """A seq, epoch or count the store cannot hold is the peer's fault."""
    if any(not 0 <= v <= _I64_MAX for v in values):
        raise RemoteProtocolError("malformed", f"{what} out of range")


class RemoteProtocolError(Exception):
    """The peer sent something unacceptable; ``reason`` is a counter name."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class LocalProtocolError(Exception):
    """This side used a core in a way its state forbids (a bug)."""


# --- messages ---------------------------------------------------------------------


class Hello(msgspec.Struct, frozen=True, tag=True):
    last_seq: int
    epoch: int
    boot_id: int
    last_change_time: float = 0.0


class Welcome(msgspec.Struct, frozen=True, tag=True):
    mode: str  # "tail" | "snapshot"
    epoch: int


class Refuse(msgspec.Struct, frozen=True, tag=True):
    reason: str


class SnapshotChunk(msgspec.Struct, frozen=True, tag=True):
    objects: tuple[Op, ...]
    accounting: tuple[AccountingEntry, ...] = ()


class SnapshotEnd(msgspec.Struct, frozen=True, tag=True):
    last_seq: int
    last_config_time: float
    objects: int  # count, checked by the standby
    last_change_time: float = 0.0  # of change last_seq, any source (the next Hello's proof)


class ChangeMsg(msgspec.Struct, frozen=True, tag=True):
    change: Change


class Ack(msgspec.Struct, frozen=True, tag=True):
    seq: int


SyncMessage = Hello | Welcome | Refuse | SnapshotChunk | SnapshotEnd | ChangeMsg | Ack


class FrameCodec:
    """Authenticated frames of ``SyncMessage`` over a byte stream."""

    def __init__(self, secret: bytes, max_frame: int = MAX_FRAME) -> None:
        if not secret:
            raise ValueError("the sync stream needs the domain secret")
        self._secret = secret
        self.max_frame = max_frame
        self._buf = bytearray()
        self._enc = msgspec.msgpack.Encoder()
        self._dec: msgspec.msgpack.Decoder[SyncMessage] = msgspec.msgpack.Decoder(SyncMessage)

    def _tag(self, data: bytes) -> bytes:
        return hmac.new(self._secret, data, hashlib.sha256).digest()[:TAG_LEN]

    def encode(self, msg: SyncMessage) -> bytes:
        payload = self._enc.encode(msg)
        body = _LEN.pack(len(payload)) + payload
        return body + self._tag(body)

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame (a connection ending here was truncated)."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[SyncMessage]:
        """Complete frames in ``data`` (and what came before); raises on a bad one."""
        self._buf += data
        out: list[SyncMessage] = []
        while len(self._buf) >= _LEN.size:
            (length,) = _LEN.unpack_from(self._buf)
            if length > self.max_frame:
                raise RemoteProtocolError("too_large", f"frame of {length} bytes")
            end = _LEN.size + length
            if len(self._buf) < end + TAG_LEN:
                break
            body = bytes(self._buf[:end])
            tag = bytes(self._buf[end : end + TAG_LEN])
            del self._buf[: end + TAG_LEN]
            if not hmac.compare_digest(self._tag(body), tag):
                raise RemoteProtocolError("bad_tag")
            try:
                out.append(self._dec.decode(body[_LEN.size :]))
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                raise RemoteProtocolError("malformed", str(exc)[:80]) from None
        return out


# --- active side --------------------------------------------------------------------------


class SyncState(enum.Enum):
    NONE = "none"
    COLD = "cold"
    WARM = "warm"
    HOT = "hot"


class ChangeSource(Protocol):
    """What the sender reads from the active's store."""

    @property
    def head_seq(self) -> int:
        """The newest seq assigned (durable or in flight)."""
        ...

    def changes_since(self, seq: int, limit: int | None = None) -> list[Change]: ...

    def snapshot(self) -> Snapshot: ...

    def tail_outweighs_snapshot(self, seq: int, floor_bytes: int) -> bool: ...


class ReplicationSender:
    """The active's end of one standby's stream (see the module docstring)."""

    def __init__(
        self,
        store: ChangeSource,
        secret: bytes,
        *,
        epoch: int,
        buffer_bytes: int = DEFAULT_BUFFER_BYTES,
        chunk_objects: int = DEFAULT_CHUNK_OBJECTS,
        tail_floor_bytes: int = TAIL_FLOOR_BYTES,
    ) -> None:
        self.store = store
        self.tail_floor_bytes = tail_floor_bytes
        self._secret = secret
        self.epoch = epoch
        self.buffer_bytes = buffer_bytes
        self.chunk_objects = chunk_objects
        self.state = SyncState.NONE
        self.connected = False
        self.attached = False
        self.out_of_sync = False
        self.acked_seq = 0
        self.refused: str | None = None  # why the last standby was refused
        self.peer_boot_id: int | None = None
        self._codec = FrameCodec(secret)
        self._hello_seen = False
        self._target = 0  # seq the standby must ack to advance COLD->WARM->HOT
        self._snapshot_seq = 0
        self._unacked: collections.deque[tuple[int, int]] = collections.deque()  # (seq, bytes)
        self.unacked_bytes = 0
        self.snapshots_sent = 0
        self.tails_sent = 0

    # --- connection ---

    def connection_made(self) -> bytes:
        if self.connected:
            raise LocalProtocolError("connection_made while connected")
        self.connected = True
        self._hello_seen = False
        self.refused = None
        self._codec = FrameCodec(self._secret)
        self.state = SyncState.NONE
        return b""

    def connection_lost(self) -> None:
        self.connected = False
        self._hello_seen = False
        self.state = SyncState.NONE

    def detach(self) -> None:
        """The standby is gone (hamgr): stop tracking what it has not acked."""
        self.attached = False

    def attach(self) -> None:
        """Count the standby as attached before it is hot (restarted cfgmgr)."""
        self.attached = True

    @property
    def streaming(self) -> bool:
        """Changes appended now are sent (a standby's Hello was answered)."""
        return self.connected and self._hello_seen and self.state is not SyncState.NONE

    @property
    def must_wait(self) -> bool:
        """Whether a change committed now is acknowledged only after the standby's ack."""
        return self.attached and not self.out_of_sync

    # --- input ---

    def receive(self, data: bytes) -> bytes:
        if not self.connected:
            raise LocalProtocolError("receive without a connection")
        out = bytearray()
        for msg in self._codec.feed(data):
            if isinstance(msg, Hello):
                out += self._on_hello(msg)
            elif isinstance(msg, Ack):
                self._on_ack(msg.seq)
            elif isinstance(msg, Refuse):
                self.refused = f"the standby refused the stream: {msg.reason}"
                raise RemoteProtocolError("refused", msg.reason)
            else:
                raise RemoteProtocolError("unexpected", type(msg).__name__)
        return bytes(out)

    def _on_hello(self, hello: Hello) -> bytes:
        if self._hello_seen:
            raise RemoteProtocolError("unexpected", "second Hello")
        self._hello_seen = True
        self.peer_boot_id = hello.boot_id
        if hello.epoch > self.epoch:
            self.refused = (
                f"standby epoch {hello.epoch} is newer than this active's epoch {self.epoch}: "
                "this active is stale"
            )
            return self._codec.encode(Refuse(reason=self.refused))
        self.refused = None
        tail = None if self.out_of_sync else self._tail_for(hello)
        out = bytearray()
        if tail is not None:
            out += self._codec.encode(Welcome(mode="tail", epoch=self.epoch))
            for change in tail:
                out += self._codec.encode(ChangeMsg(change=change))
            self.tails_sent += 1
            self.acked_seq = hello.last_seq
            self._target = self.store.head_seq
            self.state = SyncState.WARM
            self._unacked = collections.deque((c.seq, 0) for c in tail)
            self.unacked_bytes = 0
            self._on_ack(self.acked_seq)  # nothing to catch up: HOT at once
        else:
            snap = self.store.snapshot()
            out += self._codec.encode(Welcome(mode="snapshot", epoch=self.epoch))
            out += self._snapshot_frames(snap)
            # Changes in flight (pipelined) or committed since the snapshot's read.
            try:
                after = self.store.changes_since(snap.last_seq)
            except (ChangeLogTrimmed, ValueError):
                after = []
            for change in after:
                out += self._codec.encode(ChangeMsg(change=change))
            self.snapshots_sent += 1
            # The snapshot replaces the standby's whole state: that is the
            # resync an out-of-sync standby needed. Keeping the flag set would
            # make hamgr order a reset again mid-snapshot, forever.
            self.out_of_sync = False
            self.acked_seq = 0
            self._snapshot_seq = snap.last_seq
            self._target = snap.last_seq
            self.state = SyncState.COLD
            self._unacked = collections.deque((c.seq, 0) for c in after)
            self.unacked_bytes = 0
        return bytes(out)

    def _tail_for(self, hello: Hello) -> list[Change] | None:
        """The changes that bring this standby up to date, or None: it needs a snapshot."""
        last = self.store.head_seq
        if hello.last_seq < 0 or hello.last_seq > last:
            return None
        try:
            if hello.last_seq > 0:
                mine = self.store.changes_since(hello.last_seq - 1, limit=1)
                if not mine or mine[0].seq != hello.last_seq:
                    return None
                if mine[0].time != hello.last_change_time:
                    return None  # divergent history (split-brain loser): start over
            if self.store.tail_outweighs_snapshot(hello.last_seq, self.tail_floor_bytes):
                return None  # cheaper as a snapshot (TAIL_FLOOR_BYTES)
            return self.store.changes_since(hello.last_seq)
        except (ChangeLogTrimmed, ValueError):
            return None

    def _snapshot_frames(self, snap: Snapshot) -> bytes:
        out = bytearray()
        objs, acct, n = snap.objects, snap.accounting, self.chunk_objects
        for i in range(0, max(len(objs), len(acct)), n):
            out += self._codec.encode(
                SnapshotChunk(objects=objs[i : i + n], accounting=acct[i : i + n])
            )
        out += self._codec.encode(
            SnapshotEnd(
                last_seq=snap.last_seq,
                last_config_time=snap.last_config_time,
                objects=len(objs),
                last_change_time=snap.last_change_time,
            )
        )
        return bytes(out)

    def _on_ack(self, seq: int) -> None:
        if seq > self.store.head_seq:
            raise RemoteProtocolError("bad_ack", f"ack {seq} beyond last seq {self.store.head_seq}")
        self.acked_seq = max(self.acked_seq, seq)
        self._drop_acked()
        if self.state is SyncState.COLD and self.acked_seq >= self._snapshot_seq:
            self.state = SyncState.WARM
        if self.state is SyncState.WARM and self.acked_seq >= self._target:
            self.state = SyncState.HOT
            self.attached = True
            self.out_of_sync = False

    def _drop_acked(self) -> None:
        while self._unacked and self._unacked[0][0] <= self.acked_seq:
            self.unacked_bytes -= self._unacked.popleft()[1]

    # --- changes ---

    def append(self, change: Change) -> bytes:
        """A change was committed locally: the bytes to send now (maybe none)."""
        frame = self._codec.encode(ChangeMsg(change=change))
        if self.attached or self.state is not SyncState.NONE:
            self._unacked.append((change.seq, len(frame)))
            self.unacked_bytes += len(frame)
            if self.unacked_bytes > self.buffer_bytes:
                self._overflow()
                return b""
        if self._hello_seen and self.state is not SyncState.NONE:
            return frame
        return b""

    def mark_out_of_sync(self) -> None:
        """The caller gave up on the standby (e.g. no ack within its timeout): same
        outcome as a buffer overflow."""
        self._overflow()

    def _overflow(self) -> None:
        """The standby is further behind than the buffer allows: it must be reset."""
        self.out_of_sync = True
        self.attached = False
        self._unacked.clear()
        self.unacked_bytes = 0

    def status(self) -> dict[str, object]:
        return {
            "state": self.state.value,
            "out_of_sync": self.out_of_sync,
            "attached": self.attached,
            "connected": self.connected,
            "acked_seq": self.acked_seq,
            "last_seq": self.store.head_seq,
            "unacked_bytes": self.unacked_bytes,
            "buffer_bytes": self.buffer_bytes,
            "refused": self.refused,
            "snapshots_sent": self.snapshots_sent,
            "tails_sent": self.tails_sent,
        }


# --- standby side -------------------------------------------------------------------------


class ReceiverState(enum.Enum):
    IDLE = "idle"  # no connection
    HELLO_SENT = "hello_sent"  # waiting for Welcome
    SNAPSHOT = "snapshot"  # receiving snapshot chunks
    STREAMING = "streaming"  # applying changes
    REFUSED = "refused"


class ReplicationReceiver:
    """The standby's end: applies the stream to its store, in order, idempotently."""

    def __init__(
        self, store: Store, secret: bytes, *, epoch: int, boot_id: int, pipelined: bool = False
    ) -> None:
        self.store = store
        # Pipelined: changes are only ordered and checked here (``Store.prepare_replicated``)
        # and handed to a writer thread (``pop_to_persist``); ``persisted(upto)``, once
        # they are durable, makes the Ack. Else applied and committed in ``receive``.
        self.pipelined = pipelined
        self.to_persist: list[Change] = []
        self._secret = secret
        self.epoch = epoch
        self.boot_id = boot_id
        self.state = ReceiverState.IDLE
        self.refused: str | None = None
        self.applied: list[Change] = []  # drained by the adapter (pop_applied)
        self.snapshots_loaded = 0
        self.duplicates = 0
        self._codec = FrameCodec(secret)
        self._objects: list[Op] = []
        self._accounting: list[AccountingEntry] = []

    @property
    def last_applied_seq(self) -> int:
        return self.store.last_seq

    def connection_made(self) -> bytes:
        if self.state is not ReceiverState.IDLE:
            raise LocalProtocolError(f"connection_made in state {self.state.value}")
        self._codec = FrameCodec(self._secret)
        self.state = ReceiverState.HELLO_SENT
        hello = Hello(
            last_seq=self.store.last_seq,
            epoch=self.epoch,
            boot_id=self.boot_id,
            last_change_time=self.store.last_change_time(),
        )
        return self._codec.encode(hello)

    def connection_lost(self) -> int:
        """Forget the connection; returns the bytes of a truncated frame (0: clean)."""
        pending = self._codec.pending
        self.state = ReceiverState.IDLE
        self._objects.clear()
        self._accounting.clear()
        return pending

    @property
    def is_refused(self) -> bool:
        """This standby refused the active (its epoch is stale): close the connection."""
        return self.state is ReceiverState.REFUSED

    def pop_applied(self) -> list[Change]:
        applied, self.applied = self.applied, []
        return applied

    def pop_to_persist(self) -> list[Change]:
        """Pipelined: the changes to hand to the writer thread, in order."""
        out, self.to_persist = self.to_persist, []
        return out

    def persisted(self, changes: Sequence[Change]) -> bytes:
        """Pipelined: ``changes`` are durable in the store: the Ack to send (one,
        cumulative; none without a stream)."""
        if not changes:
            return b""
        self.store.durable(changes[-1].seq)
        self.applied.extend(changes)
        if self.state is not ReceiverState.STREAMING:
            return b""
        return self._codec.encode(Ack(seq=self.store.last_seq))

    def receive(self, data: bytes) -> bytes:
        """Apply what ``data`` completes; the Ack to send (one, cumulative)."""
        if self.state in (ReceiverState.IDLE, ReceiverState.REFUSED):
            raise LocalProtocolError(f"receive in state {self.state.value}")
        ack: int | None = None
        # One transaction (one fsync) for every change that ``data`` completes:
        # a catch-up tail or a burst of writes costs one disk sync per read, not
        # one per change. Durable before the Ack is built (pipelined: the
        # writer thread's group, acked by ``persisted``).
        with contextlib.nullcontext() if self.pipelined else self.store.batch():
            for msg in self._codec.feed(data):
                seq = self._on_message(msg)
                if seq is not None:
                    ack = seq
        if self.is_refused:
            return self._codec.encode(Refuse(reason=self.refused or ""))
        return self._codec.encode(Ack(seq=ack)) if ack is not None else b""

    def _on_message(self, msg: SyncMessage) -> int | None:
        if isinstance(msg, Welcome):
            if self.state is not ReceiverState.HELLO_SENT:
                raise RemoteProtocolError("unexpected", "Welcome")
            if msg.epoch < self.epoch:
                self.refused = (
                    f"active epoch {msg.epoch} is older than this standby's epoch {self.epoch}"
                )
                self.state = ReceiverState.REFUSED
                return None
            self.epoch = msg.epoch
            if msg.mode == "snapshot":
                self.state = ReceiverState.SNAPSHOT
                return None
            if msg.mode != "tail":
                raise RemoteProtocolError("malformed", f"mode {msg.mode!r}")
            self.state = ReceiverState.STREAMING
            return self.store.last_seq
        if isinstance(msg, Refuse):
            self.refused = msg.reason
            self.state = ReceiverState.REFUSED
            raise RemoteProtocolError("refused", msg.reason)
        if isinstance(msg, SnapshotChunk):
            if self.state is not ReceiverState.SNAPSHOT:
                raise RemoteProtocolError("unexpected", "SnapshotChunk")
            _check_ints("accounting seq", *(e.seq for e in msg.accounting))
            self._objects.extend(msg.objects)
            self._accounting.extend(msg.accounting)
            return None
        if isinstance(msg, SnapshotEnd):
            return self._end_snapshot(msg)
        if isinstance(msg, ChangeMsg):
            if self.state is not ReceiverState.STREAMING:
                raise RemoteProtocolError("unexpected", "Change")
            _check_ints("change", msg.change.seq, msg.change.epoch)
            try:
                if self.pipelined:
                    if self.store.prepare_replicated(msg.change):
                        self.to_persist.append(self.store.in_flight_change(msg.change.seq))
                        return None
                elif self.store.apply_replicated(msg.change):
                    self.applied.append(msg.change)
                    return self.store.last_seq
            except StoreError as exc:
                raise RemoteProtocolError("gap", str(exc)) from None
            self.duplicates += 1
            return None if self.store.in_flight else self.store.last_seq
        raise RemoteProtocolError("unexpected", type(msg).__name__)

    def _end_snapshot(self, end: SnapshotEnd) -> int:
        if self.state is not ReceiverState.SNAPSHOT:
            raise RemoteProtocolError("unexpected", "SnapshotEnd")
        _check_ints("snapshot end", end.last_seq)
        if end.objects != len(self._objects):
            raise RemoteProtocolError(
                "malformed", f"snapshot of {end.objects} objects carried {len(self._objects)}"
            )
        try:
            self.store.load_snapshot(
                Snapshot(
                    last_seq=end.last_seq,
                    objects=tuple(self._objects),
                    accounting=tuple(self._accounting),
                    last_config_time=end.last_config_time,
                    last_change_time=end.last_change_time,
                )
            )
        except StoreError as exc:
            raise RemoteProtocolError("malformed", str(exc)) from None
        self._objects.clear()
        self._accounting.clear()
        self.snapshots_loaded += 1
        self.state = ReceiverState.STREAMING
        return end.last_seq


def encode_changes(codec: FrameCodec, changes: Sequence[Change]) -> bytes:
    """Frames of several changes (tests and tools)."""
    return b"".join(codec.encode(ChangeMsg(change=c)) for c in changes)
