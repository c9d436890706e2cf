"""Sync handshake (challenge-response) and the stream cores' checked states, sans-IO."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openvsm.errors import ImpossibleTransition, LocalProtocolError, RemoteProtocolError
from openvsm.store.pss import Change, Op, Store
from openvsm.sync.stream import (
    Ack,
    Challenge,
    ChangeMsg,
    Confirm,
    FrameCodec,
    Handshake,
    Hello,
    ReceiverState,
    ReplicationReceiver,
    ReplicationSender,
    Response,
    SyncState,
)

SECRET = b"pair-key"


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[tuple[Store, Store]]:
    active, standby = Store(tmp_path / "a.db"), Store(tmp_path / "s.db")
    yield active, standby
    active.close()
    standby.close()


def commit(store: Store, i: int) -> Change:
    return store.commit(
        [Op("vlan", str(i), {"id": i, "name": f"v{i}", "owner": "cli"})],
        user="admin",
        source="cli",
        command=f"vlan {i}",
        time=float(i),
    )


def handshake(sender: ReplicationSender, receiver: ReplicationReceiver) -> tuple[bytes, bytes]:
    """Run a connection's handshake; (the active's bytes, the standby's bytes after it)."""
    sender.connection_made()
    response = sender.receive(receiver.connection_made())
    confirm_hello = receiver.receive(response)
    return response, confirm_hello


def test_both_ends_prove_the_key_over_fresh_nonces() -> None:
    standby = Handshake(SECRET, "standby", nonce=b"s" * 16)
    active = Handshake(SECRET, "active", nonce=b"a" * 16)
    response = active.on_message(standby.start())
    assert isinstance(response, Response) and not active.proven
    confirm = standby.on_message(response)
    assert isinstance(confirm, Confirm) and standby.proven
    assert active.on_message(confirm) is None and active.proven
    assert active.session_key == standby.session_key and len(active.session_key) == 32
    # Another pair of nonces gives another session key.
    other = Handshake(SECRET, "standby")
    other_active = Handshake(SECRET, "active")
    reply = other_active.on_message(other.start())
    assert isinstance(reply, Response)
    other.on_message(reply)
    assert other.session_key != standby.session_key


NEW = b"pair-key-new"


@pytest.mark.parametrize(
    ("active_keys", "standby_keys"),
    [
        ((SECRET, NEW), (SECRET,)),  # step 1 on the active only
        ((SECRET,), (SECRET, NEW)),  # step 1 on the standby only
        ((NEW, SECRET), (SECRET, NEW)),  # step 2 on the active only
        ((SECRET, NEW), (NEW, SECRET)),  # step 2 on the standby only
        ((NEW, SECRET), (NEW,)),  # step 3 on the standby only
        ((NEW,), (NEW, SECRET)),  # step 3 on the active only
    ],
)
def test_a_pair_key_rotation_overlap_keeps_the_stream(
    stores: tuple[Store, Store],
    active_keys: tuple[bytes, ...],
    standby_keys: tuple[bytes, ...],
) -> None:
    """Each step of docs/security.md's rotation, one node ahead of the other:
    the connection settles on a key both accept and the stream runs."""
    active, standby = stores
    commit(active, 1)
    sender = ReplicationSender(active, active_keys, epoch=1)
    receiver = ReplicationReceiver(standby, standby_keys, epoch=1, boot_id=5)
    _, confirm_hello = handshake(sender, receiver)
    welcome = sender.receive(confirm_hello)
    assert sender.proven and receiver.receive(welcome)
    assert standby.last_seq == 1


@pytest.mark.parametrize(
    ("active_keys", "standby_keys"), [((SECRET,), (NEW, SECRET)), ((NEW,), (SECRET,))]
)
def test_a_node_that_does_not_accept_the_new_key_refuses_it(
    stores: tuple[Store, Store],
    active_keys: tuple[bytes, ...],
    standby_keys: tuple[bytes, ...],
) -> None:
    """Signing with a key the peer does not accept (step 2 before step 1 has
    reached both nodes, or step 3 before step 2) is a bad tag: nothing replaces
    the live stream."""
    active, standby = stores
    sender = ReplicationSender(active, active_keys, epoch=1)
    receiver = ReplicationReceiver(standby, standby_keys, epoch=1, boot_id=5)
    sender.connection_made()
    with pytest.raises(RemoteProtocolError) as exc:
        receiver.receive(sender.receive(receiver.connection_made()))
    assert exc.value.reason == "bad_tag"
    assert not sender.proven and receiver.state is ReceiverState.CHALLENGED


def test_the_codec_keeps_the_key_of_the_first_good_frame() -> None:
    ours, theirs = FrameCodec((SECRET, NEW)), FrameCodec((NEW,))
    assert ours.feed(theirs.encode(Challenge(nonce=b"n" * 16))) == [Challenge(nonce=b"n" * 16)]
    assert ours.key == NEW
    # from now on only that key: a frame under the other is refused
    with pytest.raises(RemoteProtocolError):
        ours.feed(FrameCodec(SECRET).encode(Challenge(nonce=b"m" * 16)))
    with pytest.raises(ValueError):
        FrameCodec(())


def test_a_replayed_response_fails_a_fresh_challenge() -> None:
    active = Handshake(SECRET, "active")
    first = Handshake(SECRET, "standby")
    response = active.on_message(first.start())
    assert isinstance(response, Response)
    fresh = Handshake(SECRET, "standby")
    fresh.start()
    with pytest.raises(RemoteProtocolError) as exc:
        fresh.on_message(response)
    assert exc.value.reason == "bad_proof" and not fresh.proven


def test_a_replayed_confirmation_fails_a_fresh_response() -> None:
    standby, active = Handshake(SECRET, "standby"), Handshake(SECRET, "active")
    reply = active.on_message(standby.start())
    assert isinstance(reply, Response)
    confirm = standby.on_message(reply)
    assert isinstance(confirm, Confirm)
    again_standby, again_active = Handshake(SECRET, "standby"), Handshake(SECRET, "active")
    again_active.on_message(again_standby.start())
    with pytest.raises(RemoteProtocolError) as exc:
        again_active.on_message(confirm)
    assert exc.value.reason == "bad_proof" and not again_active.proven


def test_a_reflected_proof_is_refused() -> None:
    # The standby's own proof label differs from the active's: a standby's
    # confirmation sent back to it as a "response" does not verify.
    standby = Handshake(SECRET, "standby", nonce=b"n" * 16)
    active = Handshake(SECRET, "active", nonce=b"n" * 16)
    reply = active.on_message(standby.start())
    assert isinstance(reply, Response)
    victim = Handshake(SECRET, "standby", nonce=b"n" * 16)
    victim.start()
    confirm = Handshake(SECRET, "standby", nonce=b"n" * 16)
    confirm.start()
    proof = confirm.on_message(reply)
    assert isinstance(proof, Confirm)
    with pytest.raises(RemoteProtocolError, match="bad_proof"):
        victim.on_message(Response(nonce=b"n" * 16, proof=proof.proof))


def test_messages_out_of_turn_and_bad_nonces() -> None:
    active = Handshake(SECRET, "active")
    with pytest.raises(RemoteProtocolError, match="handshake"):
        active.on_message(Confirm(proof=b"x" * 32))  # before any challenge
    with pytest.raises(RemoteProtocolError, match="malformed"):
        Handshake(SECRET, "active").on_message(Challenge(nonce=b"short"))
    standby = Handshake(SECRET, "standby")
    standby.start()
    with pytest.raises(RemoteProtocolError, match="handshake"):
        standby.on_message(Challenge(nonce=b"c" * 16))
    with pytest.raises(LocalProtocolError):
        Handshake(SECRET, "active").start()
    with pytest.raises(ValueError):
        Handshake(SECRET, "vem")


def test_wrong_key_fails_at_the_proof_not_later() -> None:
    standby, active = Handshake(SECRET, "standby"), Handshake(b"other key", "active")
    reply = active.on_message(standby.start())
    assert isinstance(reply, Response)
    with pytest.raises(RemoteProtocolError, match="bad_proof"):
        standby.on_message(reply)


def test_sender_takes_no_hello_before_the_standby_proved_the_key(
    stores: tuple[Store, Store],
) -> None:
    active, _ = stores
    sender = ReplicationSender(active, SECRET, epoch=1)
    sender.connection_made()
    with pytest.raises(RemoteProtocolError) as exc:
        sender.receive(FrameCodec(SECRET).encode(Hello(last_seq=0, epoch=1, boot_id=1)))
    assert exc.value.reason == "handshake"
    assert sender.state is SyncState.NONE and not sender.streaming and not sender.proven


def test_receiver_takes_nothing_but_the_proof_when_challenged(
    stores: tuple[Store, Store],
) -> None:
    _, standby = stores
    receiver = ReplicationReceiver(standby, SECRET, epoch=1, boot_id=1)
    receiver.connection_made()
    assert receiver.state is ReceiverState.CHALLENGED
    change = ChangeMsg(change=commit(stores[0], 1))
    with pytest.raises(RemoteProtocolError, match="handshake"):
        receiver.receive(FrameCodec(SECRET).encode(change))
    assert standby.last_seq == 0


def test_frames_of_another_connection_never_verify(stores: tuple[Store, Store]) -> None:
    active, standby = stores
    sender = ReplicationSender(active, SECRET, epoch=1)
    receiver = ReplicationReceiver(standby, SECRET, epoch=1, boot_id=1)
    _, hello = handshake(sender, receiver)
    welcome = sender.receive(hello)
    receiver.receive(welcome)
    c1 = commit(active, 1)
    old_frame = sender.append(c1)
    receiver.receive(old_frame)
    assert standby.last_seq == 1
    sender.connection_lost()
    receiver.connection_lost()
    handshake(sender, receiver)
    # The captured change frame of the old connection, on the new one.
    with pytest.raises(RemoteProtocolError) as exc:
        receiver.receive(old_frame)
    assert exc.value.reason == "bad_tag"


def test_confirmation_and_hello_in_one_read_change_key_between(
    stores: tuple[Store, Store],
) -> None:
    active, standby = stores
    commit(active, 1)
    sender = ReplicationSender(active, SECRET, epoch=1)
    receiver = ReplicationReceiver(standby, SECRET, epoch=1, boot_id=1)
    _, confirm_hello = handshake(sender, receiver)
    out = sender.receive(confirm_hello)  # Confirm (pair key) + Hello (session key)
    assert sender.proven and sender.state is SyncState.WARM
    assert receiver.receive(out)  # Welcome, change 1 -> an Ack
    assert standby.last_seq == 1


def test_adapter_handshake_hands_a_proven_connection(stores: tuple[Store, Store]) -> None:
    _, standby = stores
    receiver = ReplicationReceiver(standby, SECRET, epoch=1, boot_id=1)
    with pytest.raises(LocalProtocolError):
        receiver.connection_made(Handshake(SECRET, "standby"))  # not proven
    hs, active = Handshake(SECRET, "standby"), Handshake(SECRET, "active")
    reply = active.on_message(hs.start())
    assert isinstance(reply, Response)
    hs.on_message(reply)
    hello = receiver.connection_made(hs)
    assert receiver.state is ReceiverState.HELLO_SENT
    assert FrameCodec(hs.session_key).feed(hello) == [
        Hello(last_seq=0, epoch=1, boot_id=1, last_change_time=standby.last_change_time())
    ]


def test_impossible_transitions_raise(stores: tuple[Store, Store]) -> None:
    active, standby = stores
    sender = ReplicationSender(active, SECRET, epoch=1)
    with pytest.raises(ImpossibleTransition):
        sender._set_state(SyncState.HOT)  # NONE -> HOT skips the catch-up
    receiver = ReplicationReceiver(standby, SECRET, epoch=1, boot_id=1)
    with pytest.raises(ImpossibleTransition):
        receiver._set_state(ReceiverState.STREAMING)  # IDLE -> STREAMING: no handshake
    receiver.connection_made()
    with pytest.raises(ImpossibleTransition):
        receiver._set_state(ReceiverState.SNAPSHOT)  # CHALLENGED -> SNAPSHOT
    with pytest.raises(AttributeError):
        sender.state = SyncState.HOT  # type: ignore[misc]


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_replayed_or_reordered_captured_frames_never_change_a_state(data: st.DataObject) -> None:
    """Capture both directions of real connections; feed any sequence of those
    frames (replayed, reordered) into a fresh connection's cores: each raises
    a RemoteProtocolError or does nothing, and never proves a handshake,
    moves a state or applies a change."""
    tmp = tempfile.TemporaryDirectory(prefix="openvsm-hs-")
    active, standby = Store(Path(tmp.name) / "a.db"), Store(Path(tmp.name) / "s.db")
    try:
        captured: list[bytes] = []
        for round_ in range(2):
            sender = ReplicationSender(active, SECRET, epoch=1)
            receiver = ReplicationReceiver(standby, SECRET, epoch=1, boot_id=1)
            sender.connection_made()
            challenge = receiver.connection_made()
            response = sender.receive(challenge)
            confirm_hello = receiver.receive(response)
            welcome = sender.receive(confirm_hello)
            ack = receiver.receive(welcome)
            change = sender.append(commit(active, round_ + 1))
            ack2 = receiver.receive(change)
            captured += [challenge, response, confirm_hello, welcome, ack, change, ack2]
            sender.connection_lost()
            receiver.connection_lost()
        frames = [f for f in captured if f]
        order = data.draw(st.lists(st.sampled_from(frames), max_size=8))
        victim_r = ReplicationReceiver(standby, SECRET, epoch=1, boot_id=1)
        victim_s = ReplicationSender(active, SECRET, epoch=1)
        victim_r.connection_made()
        victim_s.connection_made()
        last = standby.last_seq
        for frame in order:
            for core in (victim_r, victim_s):
                try:
                    core.receive(frame)
                except RemoteProtocolError:
                    pass
                if isinstance(core, ReplicationReceiver) and core.state is ReceiverState.IDLE:
                    core.connection_made()
        assert not victim_s.proven and victim_s.state is SyncState.NONE
        assert victim_r.state is ReceiverState.CHALLENGED
        assert standby.last_seq == last
    finally:
        active.close()
        standby.close()
        tmp.cleanup()


def test_acks_replayed_within_a_connection_are_idempotent(stores: tuple[Store, Store]) -> None:
    active, standby = stores
    sender = ReplicationSender(active, SECRET, epoch=1)
    receiver = ReplicationReceiver(standby, SECRET, epoch=1, boot_id=1)
    _, hello = handshake(sender, receiver)
    receiver.receive(sender.receive(hello))
    ack = receiver.receive(sender.append(commit(active, 1)))
    sender.receive(ack)
    sender.receive(ack)
    assert sender.acked_seq == 1 and sender.state is SyncState.HOT
    assert FrameCodec(sender._handshake.session_key).feed(ack) == [Ack(seq=1)]
