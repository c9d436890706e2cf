"""Node configuration: one TOML file per VSM node or VEM host.

Validation is strict: an invalid file raises ``ConfigError`` naming the key
and the allowed range; ``openvsm vsm``/``openvsm vem`` then exit with code 2
before anything is started.

VSM node file::

    [node]
    name = "primary"            # free text, used for the run directory name
    domain_id = 100             # 1-4095
    role = "primary"            # primary | secondary
    secret = "lab-secret"       # old files: the one domain secret (at least 8 characters);
                                # with [keys] leave it out
    system_mac = "02:00:00:00:00:01"  # optional pin; else kept in data_dir (openvsm.identity)
    data_dir = "/var/lib/openvsm/primary"
    run_dir = "/run/openvsm/primary"
    hostname = "switch"         # CLI prompt
    clock_offset_s = 0.0        # added to the wall clock (fault campaigns only)

    [interfaces.control]        # heartbeats + sync (TCP on the same port)
    transport = "udp"           # udp | l2
    local = "127.0.0.1:17001"
    peer = "127.0.0.1:17101"
    # l2 only: device = "eth1", peer_mac = "..." (optional)

    [interfaces.mgmt]           # heartbeats only when degraded; REST lives here
    local = "127.0.0.1:17002"
    peer = "127.0.0.1:17102"

    [timers]
    heartbeat_interval_ms = 1000    # 100-1000
    max_loss_interval_ms = 15000    # 6 heartbeats .. 30000 (seed: 6-30 s, default 15 s)
    discovery_window_ms = 5000      # >= 2 heartbeats

    [sync]
    buffer_bytes = 4194304          # what the active buffers for an unreachable standby

    [vem]
    listen = "127.0.0.1:17003"      # where this node talks to VEMs (UDP)
    module_limit = 1024
    heartbeat_interval_ms = 1000    # optional, 100-10000: the VEM heartbeat (default [timers])
    loss_ms = 15000                 # optional, 100-600000: a silent VEM's loss time
                                    # (default [timers] max_loss_interval_ms)

    [keys]                          # files (0600, first line; relative to this file)
    pair_key = "pair.secret"        # the pair key: heartbeats, resolution, sync (both VSMs)
    pair_key_next = "pair-next.secret"  # optional: a second pair key accepted (rotation
                                    # overlap; needs vem_key); frames signed with pair_key
    vem_key = "vem.secret"          # the domain VEM key: hosts' keys derive from it (VSMs only)
    vem_key_next = "vem-next.secret"  # optional: a second VEM key accepted (rotation overlap)

    [tls]                           # the pair certificate (openvsm.credentials)
    cert = "pair.crt"               # same files on both nodes; relative to this file
    key = "pair.key"                # 0600

    [rest]
    listen = "127.0.0.1:8443"       # optional HTTPS listener; needs [tls]; serves /metrics, /status
    plain_listen = "127.0.0.1:8080" # optional plain HTTP (the n1kv driver speaks
                                    # http://): bind it to the management network only

    [observe]                       # optional (docs/observability.md)
    peer_status_url = "http://127.0.0.1:8180"  # the other VSM's REST listener (/status page)
    notify = "/path/script"         # run with DOMAIN NODE STATE EPOCH on settled transitions
    notify_active = "/path/a"       # per state (ACTIVE | STANDBY | FAULT), before ``notify``
    notify_standby = "/path/b"
    notify_fault = "/path/c"
    notify_timeout_s = 10.0         # 0.1-600; a hook still running then is killed
    trace_max_bytes = 1048576       # RUNDIR/redundancy-trace.jsonl rotated past this size
    trace_keep = 3                  # rotated files kept

    [ssh]                           # optional; absent = no SSH server (docs/remote-management.md)
    listen = ["127.0.0.1:2222"]     # this node's own address(es)
    host_key = "ssh_host_ed25519_key"  # the pair's one host key (openvsm init / the lab)
    max_sessions = 32
    login_delay_ms = 1000           # answer to a wrong password (per attempt)
    max_failures = 5                # per source address and per user in failure_window_s
    failure_window_s = 60
    write_timeout_s = 30            # a session whose client reads nothing for this long ends

    [mgmt]                          # optional: the pair's shared management address
    address = "10.1.0.10/24"        # held by the active only (gratuitous ARP on taking it)
    device = "mgmt0"
    ssh_port = 22                   # the SSH server also listens there while holding it

Without ``[keys]`` (old files) ``node.secret`` signs every frame, VEM frames
too, so every host holds it; with ``[keys] vem_key`` each host holds only its
own key (``openvsm.wire.keys``, docs/security.md "Keys").

With ``[tls]`` the replication stream is mutual TLS with the pair
certificate; without it (unit tests, old files) it is plain TCP with the
stream's HMAC only, and a REST ``listen`` is refused.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openvsm.macs import is_mac, is_multicast, local_unicast
from openvsm.node import RunDir


class ConfigError(ValueError):
    """A configuration file is invalid; the message names the key and the rule."""


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def addr(self) -> tuple[str, int]:
        return (self.host, self.port)


@dataclass(frozen=True)
class InterfaceConfig:
    name: str  # "control" | "mgmt"
    transport: str  # "udp" | "l2"
    local: Endpoint
    peer: Endpoint | None
    device: str | None = None
    peer_mac: str | None = None


@dataclass(frozen=True)
class Timers:
    heartbeat_interval: float = 1.0
    max_loss_interval: float = 15.0
    discovery_window: float = 5.0

    @property
    def degraded_after(self) -> float:
        """Seed: half of the max heartbeat loss interval."""
        return self.max_loss_interval / 2


@dataclass(frozen=True)
class ObserveConfig:
    """``[observe]``: the status page's peer, notify hooks, the JSON-lines trace."""

    peer_status_url: str | None = None
    notify: str | None = None
    notify_active: str | None = None
    notify_standby: str | None = None
    notify_fault: str | None = None
    notify_timeout_s: float = 10.0
    trace_max_bytes: int = 1 << 20
    trace_keep: int = 3


@dataclass(frozen=True)
class SshConfig:
    listen: tuple[Endpoint, ...]
    host_key: Path
    max_sessions: int = 32
    login_delay: float = 1.0
    max_failures: int = 5
    failure_window: float = 60.0
    write_timeout: float = 30.0  # a session whose client reads nothing for this long ends


@dataclass(frozen=True)
class SharedMgmtConfig:
    """The pair's shared management address ([mgmt]): only the active holds it."""

    address: str  # "10.1.0.10/24"
    device: str
    ssh_port: int = 22

    @property
    def ip(self) -> str:
        return self.address.partition("/")[0]


@dataclass(frozen=True)
class NodeConfig:
    name: str
    domain_id: int
    role: str
    secret: bytes  # the pair key ([keys] pair_key, or the old node.secret)
    configured_mac: str | None  # node.system_mac when the file pins it
    data_dir: Path
    run_dir: Path
    hostname: str
    control: InterfaceConfig
    mgmt: InterfaceConfig
    timers: Timers
    sync_buffer_bytes: int
    vem_listen: Endpoint
    module_limit: int
    rest_listen: Endpoint | None
    clock_offset_s: float = 0.0
    rest_plain_listen: Endpoint | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    path: Path | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    ssh: SshConfig | None = None
    shared_mgmt: SharedMgmtConfig | None = None
    # The MAC this installation uses, set at node start by ``openvsm.identity``.
    resolved_mac: str | None = None
    observe: ObserveConfig = field(default_factory=ObserveConfig)
    # [keys] vem_key (then vem_key_next): empty = old files, VEM frames signed with ``secret``
    vem_keys: tuple[bytes, ...] = field(default=(), repr=False)
    # [keys] pair_key_next: a second pair key accepted during a rotation overlap
    pair_key_next: bytes | None = field(default=None, repr=False)
    # [vem] heartbeat_interval_ms / loss_ms (seconds); None: the [timers] values.
    vem_heartbeat_interval: float | None = None
    vem_loss_time: float | None = None

    @property
    def system_mac(self) -> str:
        """This VSM's system MAC: never derived from the file's contents (DESIGN §2)."""
        mac = self.resolved_mac or self.configured_mac
        if mac is None:
            raise ConfigError(
                "node.system_mac: not resolved yet (openvsm.identity.resolve_identity "
                "reads or generates it in the data directory)"
            )
        return mac

    @property
    def pair_keys(self) -> tuple[bytes, ...]:
        """The pair keys this node accepts: the one it signs with first."""
        return (self.secret,) + ((self.pair_key_next,) if self.pair_key_next else ())

    @property
    def rundir(self) -> RunDir:
        """The names of this node's sockets and run files."""
        return RunDir(self.run_dir)

    @property
    def sup_number(self) -> int:
        return 1 if self.role == "primary" else 2

    @property
    def peer_role(self) -> str:
        return "secondary" if self.role == "primary" else "primary"


@dataclass(frozen=True)
class VemConfig:
    host_uuid: str
    host_name: str
    host_ip: str
    domain_id: int
    secret: bytes  # this host's key (vem.key_file), or the old domain secret (vem.secret)
    local: Endpoint
    vsms: tuple[Endpoint, ...]
    run_dir: Path
    data_dir: Path
    backend: str
    heartbeat_interval: float
    headless_after: float
    ovs_run_dir: Path | None = None
    path: Path | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    # backend "ovs": the OVSDB remote (default: ovs_run_dir/db.sock, else the system
    # OVS), the bridge, the namespace of its devices (lab), the uplinks.
    ovsdb: str = ""
    bridge: str = "br-int"
    ovs_netns: str | None = None
    uplinks: tuple[UplinkConfig, ...] = ()
    poll_interval: float = 0.25
    report_interval: float = 5.0
    metrics_listen: Endpoint | None = None  # GET /metrics (openvsm.observe.vem)

    @property
    def rundir(self) -> RunDir:
        """The names of this VEM agent's socket and run files."""
        return RunDir(self.run_dir)

    @property
    def ovsdb_remote(self) -> str:
        if self.ovsdb:
            return self.ovsdb
        if self.ovs_run_dir is not None:
            return f"unix:{self.ovs_run_dir / 'db.sock'}"
        return "unix:/var/run/openvswitch/db.sock"


@dataclass(frozen=True)
class UplinkConfig:
    device: str  # e.g. "eth1"
    port_profile: str  # an uplink (type ethernet) port profile on the VSM


def _get(section: dict[str, Any], key: str, where: str, kind: type, default: Any = ...) -> Any:
    if key not in section:
        if default is ...:
            raise ConfigError(f"{where}.{key}: required key is missing")
        return default
    value = section[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if kind is int and isinstance(value, bool):
        raise ConfigError(f"{where}.{key}: must be an integer, got {value!r}")
    if not isinstance(value, kind):
        raise ConfigError(f"{where}.{key}: must be {kind.__name__}, got {value!r}")
    return value


def _int_range(
    section: dict[str, Any], key: str, where: str, lo: int, hi: int, default: Any = ...
) -> int:
    value: int = _get(section, key, where, int, default)
    if not lo <= value <= hi:
        raise ConfigError(f"{where}.{key}: {value} is out of range (allowed {lo}-{hi})")
    return value


def _optional_ms(section: dict[str, Any], key: str, where: str, lo: int, hi: int) -> float | None:
    """An optional whole number of milliseconds, in seconds (None when absent)."""
    if key not in section:
        return None
    return _int_range(section, key, where, lo, hi) / 1000


def parse_endpoint(text: str, where: str) -> Endpoint:
    host, sep, port_s = text.rpartition(":")
    if not sep or not host:
        raise ConfigError(f"{where}: {text!r} is not ip:port")
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(f"{where}: {host!r} is not an IP address") from None
    try:
        port = int(port_s)
    except ValueError:
        raise ConfigError(f"{where}: port {port_s!r} is not a number") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"{where}: port {port} is out of range (allowed 0-65535)")
    return Endpoint(host, port)


def _mac(text: str, where: str) -> str:
    if not is_mac(text):
        raise ConfigError(f"{where}: {text!r} is not a MAC address (aa:bb:cc:dd:ee:ff)")
    return text.lower()


def unicast_mac(text: str, where: str) -> str:
    """A MAC that can name a VSM: well formed and not multicast/broadcast."""
    mac = _mac(text, where)
    if is_multicast(mac):
        raise ConfigError(f"{where}: {text!r} is a multicast address, not a system MAC")
    return mac


def derived_mac(seed: str) -> str:
    """A locally administered unicast MAC derived from a seed string.

    For a VSM, only the migration of a data directory from before
    ``openvsm.identity`` uses it (it was then derived from domain id and name)."""
    return local_unicast(hashlib.sha256(seed.encode()).digest())


def _interface(doc: dict[str, Any], name: str) -> InterfaceConfig:
    where = f"interfaces.{name}"
    section = doc.get("interfaces", {}).get(name)
    if not isinstance(section, dict):
        raise ConfigError(f"{where}: required section is missing")
    transport = _get(section, "transport", where, str, "udp")
    if transport not in ("udp", "l2"):
        raise ConfigError(f"{where}.transport: {transport!r} is not allowed (udp | l2)")
    local = parse_endpoint(_get(section, "local", where, str), f"{where}.local")
    peer_s = _get(section, "peer", where, str, None)
    peer = parse_endpoint(peer_s, f"{where}.peer") if peer_s else None
    device = _get(section, "device", where, str, None)
    if transport == "l2" and not device:
        raise ConfigError(f'{where}.device: required with transport = "l2"')
    peer_mac_s = _get(section, "peer_mac", where, str, None)
    peer_mac = _mac(peer_mac_s, f"{where}.peer_mac") if peer_mac_s else None
    return InterfaceConfig(name, transport, local, peer, device, peer_mac)


def _timers(doc: dict[str, Any]) -> Timers:
    where = "timers"
    section = doc.get("timers", {})
    if not isinstance(section, dict):
        raise ConfigError("timers: must be a table")
    hb = _int_range(section, "heartbeat_interval_ms", where, 100, 1000, 1000)
    loss = _int_range(section, "max_loss_interval_ms", where, 6 * hb, 30000, max(15000, 6 * hb))
    disc = _int_range(section, "discovery_window_ms", where, 2 * hb, 60000, 5 * hb)
    return Timers(hb / 1000, loss / 1000, disc / 1000)


_OBSERVE_KEYS = frozenset(
    {
        "peer_status_url",
        "notify",
        "notify_active",
        "notify_standby",
        "notify_fault",
        "notify_timeout_s",
        "trace_max_bytes",
        "trace_keep",
    }
)


def _observe(doc: dict[str, Any]) -> ObserveConfig:
    sec = doc.get("observe", {})
    if not isinstance(sec, dict):
        raise ConfigError("observe: must be a table")
    unknown = sorted(set(sec) - _OBSERVE_KEYS)
    if unknown:
        raise ConfigError(f"observe.{unknown[0]}: unknown key (allowed: {sorted(_OBSERVE_KEYS)})")
    url = _get(sec, "peer_status_url", "observe", str, None)
    if url is not None and not url.startswith(("http://", "https://")):
        raise ConfigError(f"observe.peer_status_url: {url!r} is not an http(s) URL")
    for key in ("notify", "notify_active", "notify_standby", "notify_fault"):
        path = _get(sec, key, "observe", str, None)
        if path is not None and not path.strip():
            raise ConfigError(f"observe.{key}: must name a program")
    timeout = _get(sec, "notify_timeout_s", "observe", float, 10.0)
    if not 0.1 <= timeout <= 600:
        raise ConfigError(f"observe.notify_timeout_s: {timeout} is out of range (0.1-600)")
    return ObserveConfig(
        peer_status_url=url,
        notify=_get(sec, "notify", "observe", str, None),
        notify_active=_get(sec, "notify_active", "observe", str, None),
        notify_standby=_get(sec, "notify_standby", "observe", str, None),
        notify_fault=_get(sec, "notify_fault", "observe", str, None),
        notify_timeout_s=float(timeout),
        trace_max_bytes=_int_range(sec, "trace_max_bytes", "observe", 4096, 1 << 30, 1 << 20),
        trace_keep=_int_range(sec, "trace_keep", "observe", 1, 100, 3),
    )


def load_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def load_node_config(path: Path) -> NodeConfig:
    doc = load_toml(path)
    cfg = node_config_from_dict(doc, base=path.parent)
    return NodeConfig(**{**cfg.__dict__, "path": path})


def node_config_from_dict(doc: dict[str, Any], base: Path | None = None) -> NodeConfig:
    node = doc.get("node")
    if not isinstance(node, dict):
        raise ConfigError("node: required section is missing")
    where = "node"
    domain_id = _int_range(node, "domain_id", where, 1, 4095)
    role = _get(node, "role", where, str)
    if role not in ("primary", "secondary"):
        raise ConfigError(f"node.role: {role!r} is not allowed (primary | secondary)")
    name = _get(node, "name", where, str, role)
    mac_s = _get(node, "system_mac", where, str, None)
    configured_mac = unicast_mac(mac_s, "node.system_mac") if mac_s else None
    base = base or Path.cwd()
    secret, vem_keys, pair_next = _node_keys(doc, node, base)
    data_dir = base / _get(node, "data_dir", where, str)
    run_dir = base / _get(node, "run_dir", where, str)
    if len(str(RunDir(run_dir).cfgmgr)) > 100:
        raise ConfigError(f"node.run_dir: {run_dir} is too long for Unix sockets (max ~90 chars)")
    hostname = _get(node, "hostname", where, str, "switch")
    offset = _get(node, "clock_offset_s", where, float, 0.0)
    sync = doc.get("sync", {})
    buffer_bytes = _int_range(sync, "buffer_bytes", "sync", 1024, 1 << 34, 4 << 20)
    vem = doc.get("vem", {})
    vem_listen = parse_endpoint(_get(vem, "listen", "vem", str), "vem.listen")
    module_limit = _int_range(vem, "module_limit", "vem", 1, 65000, 1024)
    rest = doc.get("rest", {})
    rest_s = _get(rest, "listen", "rest", str, None)
    rest_listen = parse_endpoint(rest_s, "rest.listen") if rest_s else None
    plain_s = _get(rest, "plain_listen", "rest", str, None)
    rest_plain = parse_endpoint(plain_s, "rest.plain_listen") if plain_s else None
    tls_cert, tls_key = _tls(doc, base)
    if rest_listen is not None and tls_cert is None:
        raise ConfigError(
            "rest.listen: HTTPS needs [tls] cert and key (openvsm init makes them); "
            "use rest.plain_listen for a plain-HTTP listener"
        )
    return NodeConfig(
        name=name,
        domain_id=domain_id,
        role=role,
        secret=secret,
        vem_keys=vem_keys,
        pair_key_next=pair_next,
        configured_mac=configured_mac,
        data_dir=data_dir,
        run_dir=run_dir,
        hostname=hostname,
        control=_interface(doc, "control"),
        mgmt=_interface(doc, "mgmt"),
        timers=_timers(doc),
        sync_buffer_bytes=buffer_bytes,
        vem_listen=vem_listen,
        module_limit=module_limit,
        vem_heartbeat_interval=_optional_ms(vem, "heartbeat_interval_ms", "vem", 100, 10000),
        vem_loss_time=_optional_ms(vem, "loss_ms", "vem", 100, 600000),
        rest_listen=rest_listen,
        rest_plain_listen=rest_plain,
        tls_cert=tls_cert,
        tls_key=tls_key,
        clock_offset_s=offset,
        raw=doc,
        observe=_observe(doc),
        ssh=_ssh(doc, base),
        shared_mgmt=_shared_mgmt(doc),
    )


def _ssh(doc: dict[str, Any], base: Path) -> SshConfig | None:
    section = doc.get("ssh")
    if section is None:
        return None
    if not isinstance(section, dict):
        raise ConfigError("ssh: must be a table")
    raw = _get(section, "listen", "ssh", list)
    if not raw or not all(isinstance(v, str) for v in raw):
        raise ConfigError("ssh.listen: must be a non-empty list of ip:port strings")
    return SshConfig(
        listen=tuple(parse_endpoint(v, "ssh.listen") for v in raw),
        host_key=base / _get(section, "host_key", "ssh", str),
        max_sessions=_int_range(section, "max_sessions", "ssh", 1, 1024, 32),
        login_delay=_int_range(section, "login_delay_ms", "ssh", 0, 10000, 1000) / 1000,
        max_failures=_int_range(section, "max_failures", "ssh", 1, 1000, 5),
        failure_window=float(_int_range(section, "failure_window_s", "ssh", 1, 86400, 60)),
        write_timeout=float(_int_range(section, "write_timeout_s", "ssh", 1, 3600, 30)),
    )


def _shared_mgmt(doc: dict[str, Any]) -> SharedMgmtConfig | None:
    section = doc.get("mgmt")
    if section is None:
        return None
    if not isinstance(section, dict):
        raise ConfigError("mgmt: must be a table")
    address = _get(section, "address", "mgmt", str)
    try:
        iface = ipaddress.ip_interface(address)
    except ValueError:
        raise ConfigError(f"mgmt.address: {address!r} is not ip/prefix") from None
    if "/" not in address or iface.version != 4:
        raise ConfigError(f"mgmt.address: {address!r} must be an IPv4 address with /prefix")
    device = _get(section, "device", "mgmt", str)
    if not device or len(device) > 15 or "/" in device or " " in device:
        raise ConfigError(f"mgmt.device: {device!r} is not a device name (1-15 chars)")
    return SharedMgmtConfig(
        address=address,
        device=device,
        ssh_port=_int_range(section, "ssh_port", "mgmt", 1, 65535, 22),
    )


def _tls(doc: dict[str, Any], base: Path) -> tuple[Path | None, Path | None]:
    tls = doc.get("tls")
    if tls is None:
        return None, None
    if not isinstance(tls, dict):
        raise ConfigError("tls: must be a table with cert and key")
    cert = base / _get(tls, "cert", "tls", str)
    key = base / _get(tls, "key", "tls", str)
    for name, path in (("cert", cert), ("key", key)):
        if not path.is_file():
            raise ConfigError(f"tls.{name}: {path} is not a readable file")
    return cert, key


def read_secret_file(path: Path, where: str, *, private: bool = False) -> str:
    """A key kept in a file (first line): never on a command line, where ``ps`` shows it.

    ``private``: the file must not be readable by group or others (mode 0600)."""
    try:
        if private and path.stat().st_mode & 0o077:
            raise ConfigError(f"{where}: {path} is readable by group or others (chmod 600 {path})")
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read {path}: {exc.strerror}") from None
    text = lines[0].strip() if lines else ""
    if len(text) < 8:
        raise ConfigError(f"{where}: {path} must hold a key of at least 8 characters")
    return text


def _key_file(section: dict[str, Any], key: str, where: str, base: Path) -> bytes | None:
    name = _get(section, key, where, str, None)
    if name is None:
        return None
    if not name.strip():
        raise ConfigError(f"{where}.{key}: must name a key file")
    return read_secret_file(base / name, f"{where}.{key}", private=True).encode()


def _node_keys(
    doc: dict[str, Any], node: dict[str, Any], base: Path
) -> tuple[bytes, tuple[bytes, ...], bytes | None]:
    """The pair key, the VEM keys and the second pair key of a rotation overlap:
    ``[keys]`` files, or the old ``node.secret``."""
    keys = doc.get("keys", {})
    if not isinstance(keys, dict):
        raise ConfigError("keys: must be a table")
    allowed = ("pair_key", "pair_key_next", "vem_key", "vem_key_next")
    unknown = sorted(set(keys) - set(allowed))
    if unknown:
        raise ConfigError(f"keys.{unknown[0]}: unknown key (allowed: {', '.join(allowed)})")
    pair = _key_file(keys, "pair_key", "keys", base)
    if pair is not None and "secret" in node:
        raise ConfigError("node.secret: not with keys.pair_key (the pair key is in its file)")
    if pair is None:
        if "secret" not in node:
            raise ConfigError("keys.pair_key: required key is missing (or the old node.secret)")
        text: str = _get(node, "secret", "node", str)
        if len(text) < 8:
            raise ConfigError("node.secret: must be at least 8 characters")
        pair = text.encode()
    vem = _key_file(keys, "vem_key", "keys", base)
    nxt = _key_file(keys, "vem_key_next", "keys", base)
    pair_next = _key_file(keys, "pair_key_next", "keys", base)
    if nxt is not None and vem is None:
        raise ConfigError("keys.vem_key_next: needs keys.vem_key (the current VEM key)")
    if pair_next is not None and vem is None:
        raise ConfigError(
            "keys.pair_key_next: needs keys.vem_key (with the old node.secret, hosts hold the "
            "pair key too: give the VEMs their own keys first)"
        )
    if pair_next is not None and pair_next == pair:
        raise ConfigError("keys.pair_key_next: must differ from keys.pair_key")
    pair_keys = {pair, pair_next} - {None}
    if vem is not None and (vem in pair_keys or nxt in pair_keys):
        raise ConfigError("keys.vem_key: must differ from the pair key (hosts would hold it)")
    return pair, tuple(k for k in (vem, nxt) if k is not None), pair_next


def load_vem_config(path: Path) -> VemConfig:
    doc = load_toml(path)
    return vem_config_from_dict(doc, base=path.parent, path=path)


def vem_config_from_dict(
    doc: dict[str, Any], base: Path | None = None, path: Path | None = None
) -> VemConfig:
    """VEM host file::

    [vem]
    host_uuid = "..."; host_name = "host-1"; host_ip = "127.0.0.1"
    domain_id = 100
    key_file = "host.key"                # this host's own key (0600; openvsm init / keys)
    # secret = "..."                     # old files instead: the domain secret itself
    local = "127.0.0.1:18001"            # this agent's UDP socket
    vsms = ["127.0.0.1:17003", "127.0.0.1:17103"]  # both VSMs' VEM endpoints
    run_dir = "..."; data_dir = "..."
    backend = "memory"                   # memory | ovs
    heartbeat_interval_ms = 1000
    headless_after_ms = 15000            # seed: ~15 s
    # backend "ovs" (docs/dataplane.md):
    ovsdb = "unix:/var/run/openvswitch/db.sock"   # default: <ovs_run_dir>/db.sock
    ovs_run_dir = "..."; bridge = "br-int"; ovs_netns = "..." (lab)
    uplinks = [{device = "eth1", port_profile = "uplink-po"}]
    poll_interval_ms = 250; report_interval_ms = 5000
    metrics_listen = "127.0.0.1:9110"    # optional: GET /metrics (Prometheus)
    """
    vem = doc.get("vem")
    if not isinstance(vem, dict):
        raise ConfigError("vem: required section is missing")
    where = "vem"
    base = base or Path.cwd()
    vsms_raw = _get(vem, "vsms", where, list)
    if not vsms_raw or not all(isinstance(v, str) for v in vsms_raw):
        raise ConfigError("vem.vsms: must be a non-empty list of ip:port strings")
    backend = _get(vem, "backend", where, str, "memory")
    if backend not in ("memory", "ovs"):
        raise ConfigError(f"vem.backend: {backend!r} is not allowed (memory | ovs)")
    hb = _int_range(vem, "heartbeat_interval_ms", where, 100, 10000, 1000)
    headless = _int_range(vem, "headless_after_ms", where, 3 * hb, 120000, 15000)
    secret = _vem_key(vem, base)
    ovs_run = _get(vem, "ovs_run_dir", where, str, None)
    return VemConfig(
        host_uuid=_get(vem, "host_uuid", where, str),
        host_name=_get(vem, "host_name", where, str),
        host_ip=_get(vem, "host_ip", where, str, "127.0.0.1"),
        domain_id=_int_range(vem, "domain_id", where, 1, 4095),
        secret=secret,
        local=parse_endpoint(_get(vem, "local", where, str), "vem.local"),
        vsms=tuple(parse_endpoint(v, "vem.vsms") for v in vsms_raw),
        run_dir=base / _get(vem, "run_dir", where, str),
        data_dir=base / _get(vem, "data_dir", where, str),
        backend=backend,
        heartbeat_interval=hb / 1000,
        headless_after=headless / 1000,
        ovs_run_dir=(base / ovs_run) if ovs_run else None,
        path=path,
        raw=doc,
        ovsdb=_get(vem, "ovsdb", where, str, ""),
        bridge=_get(vem, "bridge", where, str, "br-int"),
        ovs_netns=_get(vem, "ovs_netns", where, str, None),
        uplinks=_uplinks(vem),
        poll_interval=_int_range(vem, "poll_interval_ms", where, 50, 10000, 250) / 1000,
        report_interval=_int_range(vem, "report_interval_ms", where, 100, 600000, 5000) / 1000,
        metrics_listen=_optional_endpoint(vem, "metrics_listen", where),
    )


def _vem_key(vem: dict[str, Any], base: Path) -> bytes:
    """The host's key (``vem.key_file``), or the old domain secret (``vem.secret``)."""
    key = _key_file(vem, "key_file", "vem", base)
    if key is not None and "secret" in vem:
        raise ConfigError("vem.secret: not with vem.key_file (the host key is in its file)")
    if key is not None:
        return key
    if "secret" not in vem:
        raise ConfigError("vem.key_file: required key is missing (or the old vem.secret)")
    text: str = _get(vem, "secret", "vem", str)
    if len(text) < 8:
        raise ConfigError("vem.secret: must be at least 8 characters")
    return text.encode()


# The order ``render_vem_toml`` writes known keys in; others follow as given.
_VEM_KEY_ORDER = (
    "host_uuid",
    "host_name",
    "host_ip",
    "domain_id",
    "key_file",
    "secret",
    "local",
    "vsms",
    "run_dir",
    "data_dir",
    "backend",
)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))  # a TOML basic string
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")


def render_vem_toml(values: Mapping[str, Any], *, comment: str = "") -> str:
    """A VEM host file (the ``[vem]`` keys ``vem_config_from_dict`` reads; None
    values left out): the one renderer of ``openvsm init`` and the labs."""
    order = [k for k in _VEM_KEY_ORDER if k in values] + [
        k for k in values if k not in _VEM_KEY_ORDER
    ]
    lines = [f"# {line}" if line else "#" for line in comment.splitlines()]
    lines.append("[vem]")
    lines += [f"{k} = {_toml_value(values[k])}" for k in order if values[k] is not None]
    return "\n".join(lines) + "\n"


def _optional_endpoint(section: dict[str, Any], key: str, where: str) -> Endpoint | None:
    text = _get(section, key, where, str, None)
    return parse_endpoint(text, f"{where}.{key}") if text else None


def _uplinks(vem: dict[str, Any]) -> tuple[UplinkConfig, ...]:
    """``uplinks = [{device = "eth1", port_profile = "uplink-po1"}, ...]``."""
    raw = _get(vem, "uplinks", "vem", list, [])
    out = []
    for i, item in enumerate(raw):
        where = f"vem.uplinks[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(f"{where}: must be a table {{device, port_profile}}")
        device = _get(item, "device", where, str)
        if not device or len(device) > 15 or "/" in device or " " in device:
            raise ConfigError(f"{where}.device: {device!r} is not a device name (1-15 chars)")
        out.append(UplinkConfig(device=device, port_profile=_get(item, "port_profile", where, str)))
    return tuple(out)
