"""Replication stream from the active to the standby, sans-IO (DESIGN §4).

Owns the synchronisation protocol (bytes in, bytes out, no sockets, no
clock): framing and authentication, the active's ``ReplicationSender`` and
the standby's ``ReplicationReceiver``. ``openvsm.sync.transport`` runs them
over TCP.

Frames: ``len u32 | msgpack payload | tag 16s``; the tag is HMAC-SHA256 over
length and payload, keyed by the pair key, truncated to 16 bytes. A
frame that is too large, unauthenticated or malformed raises
``RemoteProtocolError`` (the peer's fault: the adapter counts it and closes
the connection); calling a core in a way its state forbids raises
``LocalProtocolError`` (our bug).

Handshake (challenge-response, before anything else on a connection)::

    standby                               active
    Challenge(nonce_s) ->
                                       <- Response(nonce_a, proof_a)
    Confirm(proof_s) ->                   (then Hello, under the session key)

``proof_a = HMAC(key, "openvsm-sync|active|" nonce_s nonce_a)``, ``proof_s``
the same with ``standby``; the nonces are fresh random bytes of each end.
From Confirm on, every frame is tagged with the session key
``HMAC(key, "openvsm-sync|session|" nonce_s nonce_a)``: a frame captured on
another connection never verifies on this one. The standby hands a
connection to its receiver (and so lets it replace the live stream) only
once ``proof_a`` verified (``Handshake``); the active takes the standby's
Hello only once ``proof_s`` verified. A replayed or half-done handshake
fails (``bad_proof``, ``handshake``) and replaces nothing.

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
import collections.abc
import contextlib
import enum
import hmac
import os
import struct
from collections.abc import Sequence
from typing import Final, Protocol

import msgspec

from openvsm.errors import ImpossibleTransition, LocalProtocolError, RemoteProtocolError
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


# --- messages ---------------------------------------------------------------------


class Challenge(msgspec.Struct, frozen=True, tag=True):
    nonce: bytes


class Response(msgspec.Struct, frozen=True, tag=True):
    nonce: bytes
    proof: bytes


class Confirm(msgspec.Struct, frozen=True, tag=True):
    proof: bytes


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


SyncMessage = (
    Challenge
    | Response
    | Confirm
    | Hello
    | Welcome
    | Refuse
    | SnapshotChunk
    | SnapshotEnd
    | ChangeMsg
    | Ack
)
_KEY_CHANGING: Final = (Response, Confirm)  # the frames after them may use the session key
NONCE_LEN: Final = 16


PairKeys = bytes | collections.abc.Sequence[bytes]


def pair_key_list(keys: PairKeys) -> tuple[bytes, ...]:
    """The accepted pair keys, the current one first (a rotation overlap adds
    ``[keys] pair_key_next``)."""
    out = (keys,) if isinstance(keys, bytes) else tuple(keys)
    if not out or not all(out):
        raise ValueError("the sync stream needs the pair key")
    return out


class FrameCodec:
    """Authenticated frames of ``SyncMessage`` over a byte stream.

    With more than one pair key (a rotation overlap) frames are tagged with the
    first until the peer's first good frame shows which key it uses: the codec
    then keeps that one (``key``) for the rest of the connection, so both ends
    of a connection use one key while each node may list them in another order.
    ``rekey`` (the session key) ends the choice."""

    def __init__(self, secret: PairKeys, max_frame: int = MAX_FRAME) -> None:
        self._accept = pair_key_list(secret)
        self._secret = self._accept[0]
        self.max_frame = max_frame
        self._buf = bytearray()
        self._enc = msgspec.msgpack.Encoder()
        self._dec: msgspec.msgpack.Decoder[SyncMessage] = msgspec.msgpack.Decoder(SyncMessage)

    def _tag(self, data: bytes) -> bytes:
        # hmac.digest: OpenSSL's one-shot HMAC, no Python HMAC object per frame.
        return hmac.digest(self._secret, data, "sha256")[:TAG_LEN]

    @property
    def key(self) -> bytes:
        """The key frames are tagged with now (the pair key this connection uses)."""
        return self._secret

    def rekey(self, key: bytes) -> None:
        """Tag and check every later frame with ``key`` (the handshake's session key)."""
        self._secret = key
        self._accept = (key,)

    def _verify(self, body: bytes, tag: bytes) -> bool:
        if hmac.compare_digest(self._tag(body), tag):
            self._accept = (self._secret,)
            return True
        for key in self._accept:
            if key != self._secret and hmac.compare_digest(
                hmac.digest(key, body, "sha256")[:TAG_LEN], tag
            ):
                self._secret = key  # the peer's key of the overlap: use it from now on
                self._accept = (key,)
                return True
        return False

    def encode(self, msg: SyncMessage) -> bytes:
        payload = self._enc.encode(msg)
        body = _LEN.pack(len(payload)) + payload
        return body + self._tag(body)

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame (a connection ending here was truncated)."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[SyncMessage]:
        """Complete frames in ``data`` (and what came before); raises on a bad one.

        The consumed bytes leave the buffer once per call (one memmove per read,
        not one per frame: a read of a hot stream holds hundreds of frames)."""
        self._buf += data
        buf = self._buf
        out: list[SyncMessage] = []
        pos = 0
        try:
            while len(buf) - pos >= _LEN.size:
                (length,) = _LEN.unpack_from(buf, pos)
                if length > self.max_frame:
                    raise RemoteProtocolError("too_large", f"frame of {length} bytes")
                end = pos + _LEN.size + length
                if len(buf) < end + TAG_LEN:
                    break
                body = bytes(buf[pos:end])
                tag = bytes(buf[end : end + TAG_LEN])
                pos = end + TAG_LEN
                if not self._verify(body, tag):
                    raise RemoteProtocolError("bad_tag")
                try:
                    msg = self._dec.decode(body[_LEN.size :])
                except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                    raise RemoteProtocolError("malformed", str(exc)[:80]) from None
                out.append(msg)
                if isinstance(msg, _KEY_CHANGING):
                    break  # what follows may be under the session key: feed(b"") for it
        finally:
            del buf[:pos]
        return out

    def feed_batches(self, data: bytes) -> collections.abc.Iterator[list[SyncMessage]]:
        """``feed`` until the buffer holds no complete frame; between two batches
        the caller may ``rekey`` (a batch ends at a key-changing frame)."""
        batch = self.feed(data)
        while batch:
            yield batch
            batch = self.feed(b"")


def _proof(key: bytes, label: str, nonce_s: bytes, nonce_a: bytes) -> bytes:
    return hmac.new(key, f"openvsm-sync|{label}|".encode() + nonce_s + nonce_a, "sha256").digest()


def _check_nonce(nonce: bytes) -> bytes:
    if len(nonce) != NONCE_LEN:
        raise RemoteProtocolError("malformed", f"nonce of {len(nonce)} bytes")
    return nonce


class Handshake:
    """Challenge-response of one sync connection, either end (module docstring).

    ``role`` is this end's: the standby sends the challenge (``start``) and
    is ``proven`` once the active's proof verified; the active answers it
    and is ``proven`` once the standby's confirmation verified. ``nonce``
    (tests) replaces the fresh random one. A bad or replayed proof, or a
    handshake message out of turn, raises ``RemoteProtocolError``.
    """

    def __init__(self, secret: PairKeys, role: str, nonce: bytes | None = None) -> None:
        if role not in ("active", "standby"):
            raise ValueError(f"role must be active or standby, not {role!r}")
        self._keys = pair_key_list(secret)
        self._secret = self._keys[0]
        self.role = role
        self.nonce = os.urandom(NONCE_LEN) if nonce is None else nonce
        self._peer_nonce: bytes | None = None
        self.proven = False
        self.session_key = b""

    def use_key(self, key: bytes) -> None:
        """Prove with ``key``: the pair key the connection's frames use
        (``FrameCodec.key``; one of the keys of a rotation overlap)."""
        if key not in self._keys:
            raise LocalProtocolError("use_key with a key this node does not accept")
        self._secret = key

    def _nonces(self) -> tuple[bytes, bytes]:
        assert self._peer_nonce is not None
        if self.role == "standby":
            return self.nonce, self._peer_nonce
        return self._peer_nonce, self.nonce

    def _prove(self, role: str) -> bytes:
        return _proof(self._secret, role, *self._nonces())

    def _done(self) -> None:
        self.proven = True
        self.session_key = _proof(self._secret, "session", *self._nonces())

    def start(self) -> Challenge:
        if self.role != "standby" or self._peer_nonce is not None or self.proven:
            raise LocalProtocolError("only a fresh standby handshake sends a challenge")
        return Challenge(nonce=self.nonce)

    def on_message(self, msg: SyncMessage) -> Response | Confirm | None:
        """The answer to send (under the old key), None once proven (no answer)."""
        if self.role == "active":
            if isinstance(msg, Challenge) and self._peer_nonce is None:
                self._peer_nonce = _check_nonce(msg.nonce)
                return Response(nonce=self.nonce, proof=self._prove("active"))
            if isinstance(msg, Confirm) and self._peer_nonce is not None and not self.proven:
                if not hmac.compare_digest(msg.proof, self._prove("standby")):
                    raise RemoteProtocolError("bad_proof", "the standby's confirmation")
                self._done()
                return None
        elif isinstance(msg, Response) and self._peer_nonce is None:
            self._peer_nonce = _check_nonce(msg.nonce)
            if not hmac.compare_digest(msg.proof, self._prove("active")):
                raise RemoteProtocolError("bad_proof", "the active's response")
            self._done()
            return Confirm(proof=self._prove("standby"))
        raise RemoteProtocolError("handshake", f"{type(msg).__name__} out of turn")


# --- active side --------------------------------------------------------------------------


class SyncState(enum.Enum):
    NONE = "none"
    COLD = "cold"
    WARM = "warm"
    HOT = "hot"


_SENDER_TRANSITIONS: Final = frozenset(
    {
        (SyncState.NONE, SyncState.NONE),  # a new connection
        (SyncState.NONE, SyncState.WARM),  # Hello answered with a tail
        (SyncState.NONE, SyncState.COLD),  # Hello answered with a snapshot
        (SyncState.COLD, SyncState.WARM),  # snapshot acked
        (SyncState.WARM, SyncState.HOT),  # caught up
        (SyncState.COLD, SyncState.NONE),  # connection lost
        (SyncState.WARM, SyncState.NONE),
        (SyncState.HOT, SyncState.NONE),
    }
)


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
        secret: PairKeys,
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
        self._state = SyncState.NONE
        self.connected = False
        self.attached = False
        self.out_of_sync = False
        self.acked_seq = 0
        self.refused: str | None = None  # why the last standby was refused
        self.peer_boot_id: int | None = None
        self._codec = FrameCodec(secret)
        self._handshake = Handshake(secret, "active")
        self._hello_seen = False
        self._target = 0  # seq the standby must ack to advance COLD->WARM->HOT
        self._snapshot_seq = 0
        self._unacked: collections.deque[tuple[int, int]] = collections.deque()  # (seq, bytes)
        self.unacked_bytes = 0
        self.snapshots_sent = 0
        self.tails_sent = 0

    @property
    def state(self) -> SyncState:
        return self._state

    def _set_state(self, new: SyncState) -> None:
        """The one place the progress changes (``_SENDER_TRANSITIONS``)."""
        if (self._state, new) not in _SENDER_TRANSITIONS:
            raise ImpossibleTransition(f"sync sender {self._state.value} -> {new.value}")
        self._state = new

    # --- connection ---

    def connection_made(self, nonce: bytes | None = None) -> bytes:
        """A new connection to the standby; it speaks first (its challenge)."""
        if self.connected:
            raise LocalProtocolError("connection_made while connected")
        self.connected = True
        self._hello_seen = False
        self.refused = None
        self._codec = FrameCodec(self._secret)
        self._handshake = Handshake(self._secret, "active", nonce)
        self._set_state(SyncState.NONE)
        return b""

    def connection_lost(self) -> None:
        self.connected = False
        self._hello_seen = False
        if self._state is not SyncState.NONE:
            self._set_state(SyncState.NONE)

    @property
    def proven(self) -> bool:
        """This connection's standby proved the pair key over fresh nonces."""
        return self._handshake.proven

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
        for batch in self._codec.feed_batches(data):
            for msg in batch:
                out += self._on_message(msg)
        return bytes(out)

    def _on_message(self, msg: SyncMessage) -> bytes:
        if isinstance(msg, Challenge | Confirm):
            self._handshake.use_key(self._codec.key)
            answer = self._handshake.on_message(msg)
            if answer is None:
                self._codec.rekey(self._handshake.session_key)
                return b""
            return self._codec.encode(answer)
        if not self._handshake.proven:
            raise RemoteProtocolError("handshake", f"{type(msg).__name__} before the handshake")
        if isinstance(msg, Hello):
            return self._on_hello(msg)
        if isinstance(msg, Ack):
            self._on_ack(msg.seq)
            return b""
        if isinstance(msg, Refuse):
            self.refused = f"the standby refused the stream: {msg.reason}"
            raise RemoteProtocolError("refused", msg.reason)
        raise RemoteProtocolError("unexpected", type(msg).__name__)

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
            self._set_state(SyncState.WARM)
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
            self._set_state(SyncState.COLD)
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
        if self._state is SyncState.COLD and self.acked_seq >= self._snapshot_seq:
            self._set_state(SyncState.WARM)
        if self._state is SyncState.WARM and self.acked_seq >= self._target:
            self._set_state(SyncState.HOT)
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
    CHALLENGED = "challenged"  # challenge sent, waiting for the active's proof
    HELLO_SENT = "hello_sent"  # waiting for Welcome
    SNAPSHOT = "snapshot"  # receiving snapshot chunks
    STREAMING = "streaming"  # applying changes
    REFUSED = "refused"


_R = ReceiverState
_RECEIVER_TRANSITIONS: Final = frozenset(
    {
        (_R.IDLE, _R.CHALLENGED),  # connection made, challenge sent
        (_R.IDLE, _R.HELLO_SENT),  # connection made after its handshake (the adapter's)
        (_R.CHALLENGED, _R.HELLO_SENT),  # the active proved the pair key
        (_R.HELLO_SENT, _R.SNAPSHOT),
        (_R.HELLO_SENT, _R.STREAMING),  # tail
        (_R.SNAPSHOT, _R.STREAMING),
        (_R.HELLO_SENT, _R.REFUSED),
        (_R.SNAPSHOT, _R.REFUSED),
        (_R.STREAMING, _R.REFUSED),
        *((state, _R.IDLE) for state in ReceiverState),  # connection lost
    }
)


class ReplicationReceiver:
    """The standby's end: applies the stream to its store, in order, idempotently."""

    def __init__(
        self, store: Store, secret: PairKeys, *, epoch: int, boot_id: int, pipelined: bool = False
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
        self._state = ReceiverState.IDLE
        self._handshake = Handshake(secret, "standby")
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

    @property
    def state(self) -> ReceiverState:
        return self._state

    def _set_state(self, new: ReceiverState) -> None:
        """The one place the receiver's state changes (``_RECEIVER_TRANSITIONS``)."""
        if (self._state, new) not in _RECEIVER_TRANSITIONS:
            raise ImpossibleTransition(f"sync receiver {self._state.value} -> {new.value}")
        self._state = new

    def connection_made(
        self, handshake: Handshake | None = None, *, nonce: bytes | None = None
    ) -> bytes:
        """A new connection from an active: the bytes to send.

        Without ``handshake``: the challenge (the Hello follows the active's
        proof). With a ``handshake`` the adapter ran and that is ``proven``
        (the live stream is replaced only then): the confirmation's work is
        done, the Hello goes out under its session key."""
        if self._state is not ReceiverState.IDLE:
            raise LocalProtocolError(f"connection_made in state {self._state.value}")
        self._codec = FrameCodec(self._secret)
        if handshake is None:
            self._handshake = Handshake(self._secret, "standby", nonce)
            self._set_state(ReceiverState.CHALLENGED)
            return self._codec.encode(self._handshake.start())
        if not handshake.proven or handshake.role != "standby":
            raise LocalProtocolError("connection_made with a handshake not proven")
        self._handshake = handshake
        self._codec.rekey(handshake.session_key)
        return self._hello()

    def _hello(self) -> bytes:
        self._set_state(ReceiverState.HELLO_SENT)
        hello = Hello(
            last_seq=self.store.last_seq,
            epoch=self.epoch,
            boot_id=self.boot_id,
            last_change_time=self.store.last_change_time(),
        )
        return self._codec.encode(hello)

    def _on_proof(self, msg: SyncMessage) -> bytes:
        """CHALLENGED: the active's response; the confirmation and the Hello."""
        self._handshake.use_key(self._codec.key)
        confirm = self._handshake.on_message(msg)
        assert confirm is not None  # a standby's proven handshake answers with Confirm
        out = self._codec.encode(confirm)
        self._codec.rekey(self._handshake.session_key)
        return out + self._hello()

    def connection_lost(self) -> int:
        """Forget the connection; returns the bytes of a truncated frame (0: clean)."""
        pending = self._codec.pending
        self._set_state(ReceiverState.IDLE)
        self._objects.clear()
        self._accounting.clear()
        return pending

    @property
    def is_refused(self) -> bool:
        """This standby refused the active (its epoch is stale): close the connection."""
        return self._state is ReceiverState.REFUSED

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
        if self._state is not ReceiverState.STREAMING:
            return b""
        return self._codec.encode(Ack(seq=self.store.last_seq))

    def receive(self, data: bytes) -> bytes:
        """Apply what ``data`` completes; the Ack to send (one, cumulative)."""
        if self._state in (ReceiverState.IDLE, ReceiverState.REFUSED):
            raise LocalProtocolError(f"receive in state {self._state.value}")
        ack: int | None = None
        out = bytearray()
        # One transaction (one fsync) for every change that ``data`` completes:
        # a catch-up tail or a burst of writes costs one disk sync per read, not
        # one per change. Durable before the Ack is built (pipelined: the
        # writer thread's group, acked by ``persisted``).
        with contextlib.nullcontext() if self.pipelined else self.store.batch():
            for batch in self._codec.feed_batches(data):
                for msg in batch:
                    if self._state is ReceiverState.CHALLENGED:
                        out += self._on_proof(msg)
                        continue
                    seq = self._on_message(msg)
                    if seq is not None:
                        ack = seq
        if self.is_refused:
            return bytes(out) + self._codec.encode(Refuse(reason=self.refused or ""))
        if ack is not None:
            out += self._codec.encode(Ack(seq=ack))
        return bytes(out)

    def _on_message(self, msg: SyncMessage) -> int | None:
        if isinstance(msg, Welcome):
            if self._state is not ReceiverState.HELLO_SENT:
                raise RemoteProtocolError("unexpected", "Welcome")
            if msg.mode not in ("snapshot", "tail"):
                raise RemoteProtocolError("malformed", f"mode {msg.mode!r}")
            if msg.epoch < self.epoch:
                self.refused = (
                    f"active epoch {msg.epoch} is older than this standby's epoch {self.epoch}"
                )
                self._set_state(ReceiverState.REFUSED)
                return None
            self.epoch = msg.epoch
            if msg.mode == "snapshot":
                self._set_state(ReceiverState.SNAPSHOT)
                return None
            self._set_state(ReceiverState.STREAMING)
            return self.store.last_seq
        if isinstance(msg, Refuse):
            self.refused = msg.reason
            self._set_state(ReceiverState.REFUSED)
            raise RemoteProtocolError("refused", msg.reason)
        if isinstance(msg, SnapshotChunk):
            if self._state is not ReceiverState.SNAPSHOT:
                raise RemoteProtocolError("unexpected", "SnapshotChunk")
            _check_ints("accounting seq", *(e.seq for e in msg.accounting))
            self._objects.extend(msg.objects)
            self._accounting.extend(msg.accounting)
            return None
        if isinstance(msg, SnapshotEnd):
            return self._end_snapshot(msg)
        if isinstance(msg, ChangeMsg):
            if self._state is not ReceiverState.STREAMING:
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
        if self._state is not ReceiverState.SNAPSHOT:
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
        self._set_state(ReceiverState.STREAMING)
        return end.last_seq


def encode_changes(codec: FrameCodec, changes: Sequence[Change]) -> bytes:
    """Frames of several changes (tests and tools)."""
    return b"".join(codec.encode(ChangeMsg(change=c)) for c in changes)
