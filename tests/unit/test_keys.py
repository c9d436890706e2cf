"""Frame keys per channel and per host (openvsm.wire.keys, issue 12 point 1):
derivation, the binding of a VEM frame's host UUID to its key, VSM-role
frames signed with a host key, the rotation overlap, config errors."""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path
from typing import Any

import pytest

from openvsm.config import (
    ConfigError,
    derived_mac,
    node_config_from_dict,
    render_vem_toml,
    vem_config_from_dict,
)
from openvsm.wire.codec import Codec, Drop, DropReason, Frame
from openvsm.wire.keys import (
    CACHE_LIMIT,
    SharedKey,
    VsmKeys,
    claimed_host,
    derive_host_key,
    vem_mac,
)
from openvsm.wire.messages import (
    Discovery,
    Flag,
    HeartbeatRequest,
    SenderRole,
    VemAttachAck,
    VemHeartbeat,
)

DOMAIN = 7
PAIR = b"pair-key-0123456789"
VEM_OLD = b"vem-key-old-0123456789"
VEM_NEW = b"vem-key-new-0123456789"
A, B = "uuid-host-a", "uuid-host-b"
PRIMARY_MAC = "02:00:00:00:00:01"


def vsm_codec(*vem: bytes) -> Codec:
    return Codec.for_vsm(DOMAIN, PAIR, vem or (VEM_OLD,))


def host_codec(host: str, vem: bytes = VEM_OLD) -> Codec:
    """What a VEM holds: its own derived key only."""
    return Codec(DOMAIN, derive_host_key(vem, host).encode())


def heartbeat(codec: Codec, host: str, *, mac: str | None = None, seq: int = 1) -> bytes:
    return codec.encode(
        VemHeartbeat(host_uuid=host, module=3),
        role=SenderRole.VEM,
        mac=mac or vem_mac(host),
        epoch=0,
        seq=seq,
    )


def reason(result: Frame | Drop) -> str:
    assert isinstance(result, Drop), result
    return result.reason.value


# ---- derivation -------------------------------------------------------------------


def test_host_key_is_hmac_of_the_vem_key_over_label_and_uuid() -> None:
    want = hmac.new(VEM_OLD, b"openvsm-vem-host" + A.encode(), hashlib.sha256).hexdigest()
    assert derive_host_key(VEM_OLD, A) == want
    assert len(want) == 64
    assert derive_host_key(VEM_OLD, B) != want  # per host
    assert derive_host_key(VEM_NEW, A) != want  # per VEM key
    # the MAC a VEM puts in its frames is the one the agent always used
    assert vem_mac(A) == derived_mac(f"vem/{A}")


def test_precomputed_key_tags_are_hmac_tags() -> None:
    from openvsm.wire.keys import KeyTag, tag

    for key in (b"k" * 8, b"x" * 64, b"y" * 65, bytes(range(200))):
        for data in (b"", b"frame", bytes(1000)):
            assert KeyTag(key).tag(data) == tag(key, data)


def test_claimed_host_reads_any_payload_and_never_raises() -> None:
    codec = Codec(DOMAIN, PAIR)
    frame = codec.encode(
        VemHeartbeat(host_uuid=A), role=SenderRole.VEM, mac=vem_mac(A), epoch=0, seq=1
    )
    from openvsm.wire.codec import HEADER_LEN, TAG_LEN

    assert claimed_host(frame[HEADER_LEN:-TAG_LEN]) == A
    for junk in (b"", b"\xc1", b"\x93\x01\x02\x03", b"\x81\xa9host_uuid\x05"):
        assert claimed_host(junk) == ""
    assert claimed_host(b"\x81\xa9host_uuid\xd9\x81" + b"x" * 129) == ""  # > 128 chars


# ---- binding ----------------------------------------------------------------------


def test_a_vem_frame_is_verified_with_the_key_of_the_host_it_claims() -> None:
    vsm = vsm_codec()
    got = vsm.decode(heartbeat(host_codec(A), A))
    assert isinstance(got, Frame) and got.host == A and got.key_gen == 0
    # host A's key on a frame that claims host B: dropped, counted apart
    assert reason(vsm.decode(heartbeat(host_codec(A), B))) == "bad_host_key"
    # the old domain-wide secret does not open any host's door
    assert reason(vsm.decode(heartbeat(Codec(DOMAIN, PAIR), A))) == "bad_host_key"
    # B's frame with A's MAC (to move A's sequence window): refused
    assert reason(vsm.decode(heartbeat(host_codec(B), B, mac=vem_mac(A)))) == "bad_mac"
    # a VEM frame naming no host
    nohost = host_codec(A).encode(
        Discovery(state="x", boot_id=1), role=SenderRole.VEM, mac=vem_mac(A), epoch=0, seq=1
    )
    assert reason(vsm.decode(nohost)) == "no_host"


def test_vsm_frames_to_a_host_are_signed_with_that_hosts_key() -> None:
    vsm = vsm_codec()
    ack = VemAttachAck(host_uuid=A, accepted=True, module=3)
    to_a = vsm.encode(ack, role=SenderRole.PRIMARY, mac=PRIMARY_MAC, epoch=2, seq=5, host=A)
    got = host_codec(A).decode(to_a)
    assert isinstance(got, Frame) and got.msg == ack
    assert reason(host_codec(B).decode(to_a)) == "bad_tag"  # B cannot read A's as the VSM's
    # nor take a VSM frame of the pair key (host "") for one of its VSMs
    to_pair = vsm.encode(ack, role=SenderRole.PRIMARY, mac=PRIMARY_MAC, epoch=2, seq=6)
    assert reason(host_codec(A).decode(to_pair)) == "bad_tag"


def test_vsm_role_frames_signed_with_a_host_key_are_dropped_and_named() -> None:
    vsm = vsm_codec()
    forger = host_codec(A)
    # the VSM->VEM frames a host receives, reflected at a VSM: they claim host A
    for msg in (VemHeartbeat(host_uuid=A), VemAttachAck(host_uuid=A, accepted=True)):
        for role in (SenderRole.PRIMARY, SenderRole.SECONDARY):
            data = forger.encode(msg, role=role, mac=PRIMARY_MAC, epoch=9, seq=1)
            assert reason(vsm.decode(data)) == "vem_key_vsm_role"
    # HA messages with the host's UUID added to the payload (unknown fields are ignored)
    body = Discovery(state="active", boot_id=1)
    data = forger.encode(body, role=SenderRole.PRIMARY, mac=PRIMARY_MAC, epoch=9, seq=1)
    assert reason(vsm.decode(data)) == "bad_tag"  # no claim: just a bad tag
    assert reason(vsm.decode(_with_claim(data, A, forger))) == "vem_key_vsm_role"
    # the pair's own frames pass
    real = vsm.encode(
        HeartbeatRequest(state="active", flags=int(Flag.RESET_ORDERED)),
        role=SenderRole.PRIMARY,
        mac=PRIMARY_MAC,
        epoch=9,
        seq=2,
    )
    got = vsm.decode(real)
    assert isinstance(got, Frame) and got.host == ""


def _with_claim(frame: bytes, host: str, codec: Codec) -> bytes:
    """The same frame with ``host_uuid`` added to its payload map, re-signed."""
    import msgspec

    from openvsm.wire.codec import _HEADER, HEADER_LEN, TAG_LEN

    fields: dict[str, Any] = msgspec.msgpack.decode(frame[HEADER_LEN:-TAG_LEN])
    payload = msgspec.msgpack.encode({**fields, "host_uuid": host})
    head = list(_HEADER.unpack_from(frame))
    head[-1] = len(payload)
    body = _HEADER.pack(*head) + payload
    return body + codec.keys.sign_keys("")[0].tag(body)


def test_a_vem_role_frame_of_the_pair_key_is_refused_by_a_keyed_vsm() -> None:
    # (old files: the one secret; with a VEM key nobody but the VSMs holds the pair key)
    data = heartbeat(Codec(DOMAIN, PAIR), A)
    assert reason(vsm_codec().decode(data)) == "bad_host_key"
    assert isinstance(Codec.for_vsm(DOMAIN, PAIR, ()).decode(data), Frame)  # old files


# ---- rotation ---------------------------------------------------------------------


def test_rotation_overlap_accepts_both_keys_then_refuses_the_old_one() -> None:
    overlap = vsm_codec(VEM_OLD, VEM_NEW)
    old_host, new_host = host_codec(A, VEM_OLD), host_codec(B, VEM_NEW)
    keys = overlap.keys
    assert isinstance(keys, VsmKeys)
    # not heard yet: a frame to the host goes once per accepted key
    assert len(keys.sign_keys(A)) == 2
    a = overlap.decode(heartbeat(old_host, A))
    b = overlap.decode(heartbeat(new_host, B))
    assert isinstance(a, Frame) and a.key_gen == 0
    assert isinstance(b, Frame) and b.key_gen == 1
    # heard: replies go with the key that host uses, and it can read them
    assert keys.generation(A) == 0 and keys.generation(B) == 1
    for host, codec in ((A, old_host), (B, new_host)):
        (key,) = keys.sign_keys(host)
        data = overlap.encode(
            VemHeartbeat(host_uuid=host), role=SenderRole.PRIMARY, mac=PRIMARY_MAC, epoch=1,
            seq=1, key=key,
        )  # fmt: skip
        assert isinstance(codec.decode(data), Frame)
    # a host rolled to the new key mid-overlap is followed
    assert isinstance(overlap.decode(heartbeat(host_codec(A, VEM_NEW), A, seq=2)), Frame)
    assert keys.generation(A) == 1
    # promoted, old key dropped: the host still on the old key is refused
    after = vsm_codec(VEM_NEW)
    assert reason(after.decode(heartbeat(old_host, A))) == "bad_host_key"
    assert isinstance(after.decode(heartbeat(new_host, B)), Frame)


PAIR_NEW = b"pair-key-new-0123456789"


def discovery(codec: Codec, seq: int = 1) -> bytes:
    return codec.encode(
        Discovery(state="active", boot_id=1),
        role=SenderRole.PRIMARY,
        mac=PRIMARY_MAC,
        epoch=1,
        seq=seq,
    )


def test_pair_key_rotation_overlap_accepts_both_signs_with_the_first() -> None:
    old_only = Codec.for_vsm(DOMAIN, PAIR, (VEM_OLD,))
    accepts_new = Codec.for_vsm(DOMAIN, PAIR, (VEM_OLD,), PAIR_NEW)  # step 1
    uses_new = Codec.for_vsm(DOMAIN, PAIR_NEW, (VEM_OLD,), PAIR)  # step 2
    new_only = Codec.for_vsm(DOMAIN, PAIR_NEW, (VEM_OLD,))  # step 3
    # a node that only added the next key still signs with the old one: both read it
    assert isinstance(old_only.decode(discovery(accepts_new)), Frame)
    # a node that swapped the keys is read by every node that accepts the new key
    for reader in (accepts_new, uses_new, new_only):
        assert isinstance(reader.decode(discovery(uses_new)), Frame)
    got = accepts_new.decode(discovery(uses_new))
    assert isinstance(got, Frame) and got.key_gen == 1
    # ... and not by one that never heard of it, nor the old key once it is dropped
    assert reason(old_only.decode(discovery(uses_new))) == "bad_tag"
    assert reason(new_only.decode(discovery(old_only))) == "bad_tag"
    # VEM frames are not keyed by the pair key: a host is unaffected by the rotation
    assert isinstance(uses_new.decode(heartbeat(host_codec(A), A)), Frame)
    with pytest.raises(ValueError, match="VEM keys"):
        Codec.for_vsm(DOMAIN, PAIR, (), PAIR_NEW)


def test_forged_host_uuids_keep_nothing_and_the_cache_is_bounded() -> None:
    vsm = vsm_codec()
    keys = vsm.keys
    assert isinstance(keys, VsmKeys)
    forger = host_codec(A)
    for i in range(500):
        assert reason(vsm.decode(heartbeat(forger, f"forged-{i}"))) == "bad_host_key"
    assert keys.generation("forged-1") is None and not keys._hosts
    small = VsmKeys(PAIR, (VEM_OLD,), cache_limit=4)
    codec = Codec(DOMAIN, keys=small)
    for i in range(10):
        host = f"host-{i}"
        assert isinstance(codec.decode(heartbeat(host_codec(host), host)), Frame)
    assert len(small._hosts) == 4 and CACHE_LIMIT >= 4096
    # an evicted host is derived again, still verified
    assert isinstance(codec.decode(heartbeat(host_codec("host-0"), "host-0", seq=2)), Frame)


def test_drop_reasons_of_the_keys_are_codec_drop_reasons() -> None:
    for value in ("bad_tag", "bad_host_key", "vem_key_vsm_role", "no_host", "bad_mac"):
        assert DropReason(value).value == value
    with pytest.raises(ValueError):
        Codec(DOMAIN)
    with pytest.raises(ValueError):
        Codec(DOMAIN, PAIR, keys=SharedKey(PAIR))
    with pytest.raises(ValueError):
        VsmKeys(PAIR, ())


# ---- configuration ----------------------------------------------------------------


def _key(path: Path, text: str = "k" * 64, mode: int = 0o600) -> str:
    path.write_text(text + "\n")
    os.chmod(path, mode)
    return str(path)


def _node(tmp: Path, node: dict[str, Any], keys: dict[str, Any] | None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "node": {"domain_id": DOMAIN, "role": "primary", "data_dir": "d", "run_dir": "r", **node},
        "interfaces": {"control": {"local": "127.0.0.1:1"}, "mgmt": {"local": "127.0.0.1:2"}},
        "vem": {"listen": "127.0.0.1:3"},
    }
    if keys is not None:
        doc["keys"] = keys
    return doc


def test_node_keys_from_files(tmp_path: Path) -> None:
    keys = {
        "pair_key": _key(tmp_path / "pair.secret", "p" * 64),
        "vem_key": _key(tmp_path / "vem.secret", "v" * 64),
        "vem_key_next": "vem-next.secret",  # relative to the file's directory
    }
    _key(tmp_path / "vem-next.secret", "n" * 64)
    cfg = node_config_from_dict(_node(tmp_path, {}, keys), base=tmp_path)
    assert cfg.secret == b"p" * 64
    assert cfg.vem_keys == (b"v" * 64, b"n" * 64)
    assert cfg.pair_key_next is None and cfg.pair_keys == (b"p" * 64,)
    _key(tmp_path / "pair-next.secret", "q" * 64)
    rotating = node_config_from_dict(
        _node(tmp_path, {}, {**keys, "pair_key_next": "pair-next.secret"}), base=tmp_path
    )
    assert rotating.pair_keys == (b"p" * 64, b"q" * 64)
    assert "q" * 64 not in repr(rotating)
    old = node_config_from_dict(_node(tmp_path, {"secret": "old-domain-secret"}, None))
    assert old.secret == b"old-domain-secret" and old.vem_keys == ()
    assert "v" * 64 not in repr(cfg)


@pytest.mark.parametrize(
    ("node", "keys", "names"),
    [
        ({}, {"vem_key": "vem.secret"}, "keys.pair_key"),
        ({}, {"pair_key": "missing"}, "keys.pair_key"),
        ({}, {"pair_key": "short"}, "keys.pair_key"),
        ({}, {"pair_key": "open"}, "keys.pair_key"),
        ({}, {"pair_key": "pair.secret", "vem_key": "missing"}, "keys.vem_key"),
        ({}, {"pair_key": "pair.secret", "vem_key": "short"}, "keys.vem_key"),
        ({}, {"pair_key": "pair.secret", "vem_key_next": "vem.secret"}, "keys.vem_key_next"),
        ({}, {"pair_key": "pair.secret", "vem_key": "pair.secret"}, "keys.vem_key"),
        ({"secret": "old-domain-secret"}, {"pair_key": "pair.secret"}, "node.secret"),
        ({}, {"pair_key": "pair.secret", "vem": "x"}, "keys.vem"),
        ({}, {"pair_key": ""}, "keys.pair_key"),
        ({}, {"pair_key": "pair.secret", "pair_key_next": "vem.secret"}, "keys.pair_key_next"),
        (
            {},
            {"pair_key": "pair.secret", "vem_key": "vem.secret", "pair_key_next": "pair.secret"},
            "keys.pair_key_next",
        ),
        (
            {},
            {"pair_key": "pair.secret", "vem_key": "vem.secret", "pair_key_next": "vem.secret"},
            "keys.vem_key",
        ),
        (
            {},
            {"pair_key": "pair.secret", "vem_key": "vem.secret", "pair_key_next": "open"},
            "keys.pair_key_next",
        ),
    ],
)
def test_node_key_errors_name_the_key(
    tmp_path: Path, node: dict[str, Any], keys: dict[str, Any], names: str
) -> None:
    _key(tmp_path / "pair.secret", "p" * 64)
    _key(tmp_path / "vem.secret", "v" * 64)
    _key(tmp_path / "short", "abc")
    _key(tmp_path / "open", "o" * 64, mode=0o644)
    with pytest.raises(ConfigError) as err:
        node_config_from_dict(_node(tmp_path, node, keys), base=tmp_path)
    assert str(err.value).startswith(names), err.value


def _vem(**extra: Any) -> dict[str, Any]:
    base = {
        "host_uuid": A,
        "host_name": "h",
        "domain_id": DOMAIN,
        "local": "127.0.0.1:4",
        "vsms": ["127.0.0.1:3"],
        "run_dir": "r",
        "data_dir": "d",
    }
    return {"vem": {**base, **extra}}


def test_vem_host_key_from_its_file_and_errors(tmp_path: Path) -> None:
    key = derive_host_key(VEM_OLD, A)
    _key(tmp_path / "host.secret", key)
    cfg = vem_config_from_dict(_vem(key_file="host.secret"), base=tmp_path)
    assert cfg.secret == key.encode()
    assert vem_config_from_dict(_vem(secret="old-domain-secret")).secret == b"old-domain-secret"
    _key(tmp_path / "short", "abc")
    _key(tmp_path / "open", key, mode=0o640)
    for extra, names in (
        ({}, "vem.key_file"),
        ({"key_file": "missing"}, "vem.key_file"),
        ({"key_file": "short"}, "vem.key_file"),
        ({"key_file": "open"}, "vem.key_file"),
        ({"key_file": "host.secret", "secret": "old-domain-secret"}, "vem.secret"),
    ):
        with pytest.raises(ConfigError) as err:
            vem_config_from_dict(_vem(**extra), base=tmp_path)
        assert str(err.value).startswith(names), (extra, err.value)
        assert key not in str(err.value)


def test_render_vem_toml_round_trips(tmp_path: Path) -> None:
    import tomllib

    values = {
        **_vem(key_file="host.secret", host_name='we"ird\\name')["vem"],
        "uplinks": [{"device": "eth1", "port_profile": "up"}],
        "ovs_netns": None,
        "heartbeat_interval_ms": 500,
    }
    _key(tmp_path / "host.secret", derive_host_key(VEM_OLD, A))
    text = render_vem_toml(values, comment="a host\nof a lab")
    assert text.startswith("# a host\n# of a lab\n[vem]\n") and "ovs_netns" not in text
    cfg = vem_config_from_dict(tomllib.loads(text), base=tmp_path)
    assert cfg.host_name == 'we"ird\\name' and cfg.uplinks[0].device == "eth1"
    assert cfg.heartbeat_interval == 0.5
