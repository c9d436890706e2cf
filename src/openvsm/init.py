"""``openvsm init``: the configuration of a new deployment, a VSM pair and N VEM
hosts, with fresh secrets, ready to copy to the machines.

``openvsm init --domain ID --hosts N --out DIR`` writes::

    DIR/primary/node.toml, DIR/secondary/node.toml    each VSM's node file
    DIR/primary/..., DIR/secondary/...                the pair's secrets (same files
                                                       on both: pair key, VEM key,
                                                       SSH host key, certificate)
    DIR/hosts/host-K/vem.toml, host.secret             each VEM host's file and its
                                                       own key (derived, nothing else)
    DIR/bootstrap.cli                                  the first admin user, to run once
    DIR/admin-password                                 its password, for the operator
    DIR/README.txt                                     what goes where (also printed)

Every file is created with mode 0600 (umask 077 while writing). Nothing is
ever overwritten: ``DIR`` must not exist or be empty.

Secrets come from ``generate_secrets`` (the one place that makes them), so
that new kinds of keys are added there and reach every deployment path
(``openvsm init``, docs) at once. Today: the pair key (HMAC of heartbeats,
resolution frames and the sync stream: ``pair.secret``, only on the VSMs),
the domain VEM key (``vem.secret``, only on the VSMs) and each host's key
derived from it and the host's UUID (``hosts/host-K/host.secret``,
``openvsm.wire.keys``), the pair's SSH host key (both VSMs serve it: a client
behind the shared management address sees one key), and the first admin
password (only its scrypt hash goes into ``bootstrap.cli``). The pair
certificate and key (ECDSA P-256, SANs: both VSMs and the shared address)
come from ``openvsm.credentials.generate_pair_credentials``, the one
certificate generator (``openvsm lab`` uses it too); the host files from
``openvsm.config.render_vem_toml``, the labs' renderer.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import os
import secrets
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from openvsm.config import render_vem_toml
from openvsm.credentials import CERT_NAME, KEY_NAME, generate_pair_credentials
from openvsm.passwords import hash_password
from openvsm.wire.keys import derive_host_key

HOST_KEY = "ssh_host_ed25519_key"
CERT = CERT_NAME
CERT_KEY = KEY_NAME
PAIR_SECRET = "pair.secret"  # the pair key (both VSMs only)
VEM_SECRET = "vem.secret"  # the domain VEM key (both VSMs only)
HOST_SECRET = "host.secret"  # one host's derived key (that host only)
ETC = "/etc/openvsm"


@dataclass(frozen=True)
class PairSecrets:
    pair_key: str
    vem_key: str
    admin_password: str
    host_key: bytes  # OpenSSH private key
    host_key_pub: bytes

    def vem_host_key(self, host_uuid: str) -> str:
        """The key of the VEM host ``host_uuid`` (``openvsm.wire.keys``)."""
        return derive_host_key(self.vem_key.encode(), host_uuid)


@contextlib.contextmanager
def _umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def write_secret(path: Path, data: bytes | str) -> None:
    """Create ``path`` with mode 0600 (never following an existing file)."""
    raw = data.encode() if isinstance(data, str) else data
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(raw)
        fh.flush()
        os.fsync(fh.fileno())


def generate_secrets() -> PairSecrets:
    """Fresh secrets of one VSM pair (see the module doc; the certificate is
    ``generate_pair_credentials``')."""
    import asyncssh

    host_key = asyncssh.generate_private_key("ssh-ed25519")
    return PairSecrets(
        pair_key=secrets.token_hex(32),
        vem_key=secrets.token_hex(32),
        admin_password=secrets.token_urlsafe(15),
        host_key=host_key.export_private_key("openssh"),
        host_key_pub=host_key.export_public_key("openssh"),
    )


def pair_certificate(names: list[str], domain: int) -> tuple[bytes, bytes]:
    """The pair certificate and key (PEM) from ``generate_pair_credentials``;
    ``names``: the SANs (the VSMs' addresses and the shared management address)."""
    with tempfile.TemporaryDirectory(prefix="openvsm-init-") as tmp:
        creds = generate_pair_credentials(
            Path(tmp), hosts=names, common_name=f"openvsm-domain-{domain}"
        )
        return creds.cert.read_bytes(), creds.key.read_bytes()


@dataclass(frozen=True)
class Plan:
    domain: int
    hosts: int
    out: Path
    vsm_ips: tuple[str, str]
    host_ips: tuple[str, ...]
    port_base: int
    ssh_port: int
    mgmt_address: str | None
    mgmt_device: str
    data_dir: str
    run_dir: str
    etc: str = ETC
    vem_backend: str = "ovs"

    def port(self, offset: int) -> int:
        return self.port_base + offset


ROLES = ("primary", "secondary")


def node_toml(plan: Plan, role: str) -> str:
    i = ROLES.index(role)
    me, peer = plan.vsm_ips[i], plan.vsm_ips[1 - i]
    etc = f"{plan.etc}/{role}"
    shared = ""
    if plan.mgmt_address:
        shared = (
            f'\n[mgmt]\naddress = "{plan.mgmt_address}"\ndevice = "{plan.mgmt_device}"\n'
            f"ssh_port = {plan.ssh_port}\n"
        )
    return f"""# openvsm VSM node {role} of domain {plan.domain} (openvsm init)
# Install as {etc}/node.toml on the {role} VSM; run: systemctl enable --now openvsm-vsm@{role}
[node]
name = "{role}"
domain_id = {plan.domain}
role = "{role}"
data_dir = "{plan.data_dir}/{role}"
run_dir = "{plan.run_dir}/{role}"
hostname = "vsm-{plan.domain}"

[interfaces.control]
local = "{me}:{plan.port(1)}"
peer = "{peer}:{plan.port(1)}"

[interfaces.mgmt]
local = "{me}:{plan.port(2)}"
peer = "{peer}:{plan.port(2)}"

[vem]
listen = "{me}:{plan.port(3)}"

[keys]
pair_key = "{etc}/{PAIR_SECRET}"
vem_key = "{etc}/{VEM_SECRET}"

[tls]
cert = "{etc}/{CERT}"
key = "{etc}/{CERT_KEY}"

[rest]
listen = "{me}:{plan.port(80)}"

[ssh]
listen = ["{me}:{plan.ssh_port}"]
host_key = "{etc}/{HOST_KEY}"
{shared}"""


def vem_toml(plan: Plan, index: int, host_uuid: str) -> str:
    name = f"host-{index}"
    ip = plan.host_ips[index - 1]
    return render_vem_toml(
        {
            "host_uuid": host_uuid,
            "host_name": name,
            "host_ip": ip,
            "domain_id": plan.domain,
            "key_file": HOST_SECRET,  # next to this file: its own key, nothing else
            "local": f"{ip}:{plan.port(4)}",
            "vsms": [f"{ip_}:{plan.port(3)}" for ip_ in plan.vsm_ips],
            "run_dir": f"{plan.run_dir}/vem",
            "data_dir": f"{plan.data_dir}/vem",
            "backend": plan.vem_backend,
        },
        comment=(
            f"openvsm VEM host {name} of domain {plan.domain} (openvsm init)\n"
            f"Install as {plan.etc}/vem.toml on {name}, {HOST_SECRET} next to it;\n"
            "run: systemctl enable --now openvsm-vem"
        ),
    )


def write_deployment(plan: Plan) -> str:
    """Write every file of ``plan`` (mode 0600); returns the "what goes where" text."""
    out = plan.out
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty: openvsm init never overwrites files")
    names = list(plan.vsm_ips)
    if plan.mgmt_address:
        names.append(plan.mgmt_address.partition("/")[0])
    sec = generate_secrets()
    with _umask(0o077):
        cert, cert_key = pair_certificate(names, plan.domain)
        out.mkdir(parents=True, exist_ok=True, mode=0o700)
        for role in ROLES:
            d = out / role
            write_secret(d / "node.toml", node_toml(plan, role))
            write_secret(d / PAIR_SECRET, sec.pair_key + "\n")
            write_secret(d / VEM_SECRET, sec.vem_key + "\n")
            write_secret(d / HOST_KEY, sec.host_key)
            write_secret(d / f"{HOST_KEY}.pub", sec.host_key_pub)
            write_secret(d / CERT, cert)
            write_secret(d / CERT_KEY, cert_key)
        for k in range(1, plan.hosts + 1):
            host_uuid = str(uuid.uuid4())
            d = out / "hosts" / f"host-{k}"
            write_secret(d / "vem.toml", vem_toml(plan, k, host_uuid))
            write_secret(d / HOST_SECRET, sec.vem_host_key(host_uuid) + "\n")
        write_secret(
            out / "bootstrap.cli",
            "configure terminal ; username admin password 5 "
            f"{hash_password(sec.admin_password)} role network-admin ; end\n",
        )
        write_secret(out / "admin-password", sec.admin_password + "\n")
        text = _where(plan)
        write_secret(out / "README.txt", text)
    return text


def _where(plan: Plan) -> str:
    lines = [
        f"openvsm domain {plan.domain}: a VSM pair and {plan.hosts} VEM host(s) in {plan.out}",
        "",
        "What goes where (every file is secret: keep mode 0600, owner root):",
    ]
    for role, ip in zip(ROLES, plan.vsm_ips, strict=True):
        lines.append(
            f"  {role}/*        -> {plan.etc}/{role}/ on the {role} VSM ({ip}); "
            f"then: systemctl enable --now openvsm-vsm@{role}"
        )
    for k in range(1, plan.hosts + 1):
        lines.append(
            f"  hosts/host-{k}/*  -> {plan.etc}/ on host-{k} ({plan.host_ips[k - 1]}) "
            f"(vem.toml, {HOST_SECRET}); then: systemctl enable --now openvsm-vem"
        )
    lines += [
        "  bootstrap.cli  -> run once on the active VSM when the pair is up:",
        f'                   openvsm cli --node {plan.run_dir}/primary -c "$(cat bootstrap.cli)"',
        "  admin-password -> the password of user admin (SSH, REST); keep it, then delete the file",
        "",
        f"SSH: ssh admin@{plan.vsm_ips[0]} -p {plan.ssh_port}"
        + (
            f"  (or the shared address {plan.mgmt_address.partition('/')[0]})"
            if plan.mgmt_address
            else ""
        ),
        "Both VSMs carry the same SSH host key and certificate: clients see one switch.",
        f"{PAIR_SECRET} and {VEM_SECRET} never leave the two VSMs; a host gets only its own",
        f"{HOST_SECRET} (a new host's: openvsm keys host --vem-key {VEM_SECRET} --host-uuid U).",
        "",
    ]
    return "\n".join(lines)


def _ips(text: str, n: int, default_base: str, where: str) -> tuple[str, ...]:
    if text:
        ips = tuple(t.strip() for t in text.split(",") if t.strip())
    else:
        base = ipaddress.ip_address(default_base)
        ips = tuple(str(base + i) for i in range(n))
    if len(ips) != n:
        raise ValueError(f"{where}: {n} addresses needed, got {len(ips)}")
    for ip in ips:
        ipaddress.ip_address(ip)
    return ips


def cli_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="openvsm init", description="write the configs of a new VSM pair and its VEM hosts"
    )
    parser.add_argument("--domain", type=int, required=True, help="domain id (1-4095)")
    parser.add_argument("--hosts", type=int, default=0, help="number of VEM hosts")
    parser.add_argument("--out", type=Path, required=True, help="new (or empty) directory")
    parser.add_argument("--vsm-ips", default="", help="primary,secondary (default 192.0.2.11-12)")
    parser.add_argument("--host-ips", default="", help="comma list (default 192.0.2.101...)")
    parser.add_argument("--port-base", type=int, default=7000, help="control +1, mgmt +2, ...")
    parser.add_argument("--ssh-port", type=int, default=22)
    parser.add_argument("--mgmt-address", default="", help="shared address, e.g. 10.1.0.10/24")
    parser.add_argument("--mgmt-device", default="mgmt0")
    parser.add_argument("--data-dir", default="/var/lib/openvsm")
    parser.add_argument("--run-dir", default="/run/openvsm")
    parser.add_argument("--etc", default=ETC, help="where the files are installed")
    parser.add_argument("--vem-backend", choices=("ovs", "memory"), default="ovs")
    args = parser.parse_args(argv)
    try:
        if not 1 <= args.domain <= 4095:
            raise ValueError(f"--domain {args.domain} is out of range (1-4095)")
        if not 0 <= args.hosts <= 4096:
            raise ValueError("--hosts must be 0-4096")
        if not 1 <= args.port_base <= 65000 or not 1 <= args.ssh_port <= 65535:
            raise ValueError("--port-base must be 1-65000 and --ssh-port 1-65535")
        if args.mgmt_address:
            ipaddress.ip_interface(args.mgmt_address)
            if "/" not in args.mgmt_address:
                raise ValueError("--mgmt-address needs a /prefix (e.g. 10.1.0.10/24)")
        plan = Plan(
            domain=args.domain,
            hosts=args.hosts,
            out=args.out.resolve(),
            vsm_ips=_ips(args.vsm_ips, 2, "192.0.2.11", "--vsm-ips"),  # type: ignore[arg-type]
            host_ips=_ips(args.host_ips, args.hosts, "192.0.2.101", "--host-ips"),
            port_base=args.port_base,
            ssh_port=args.ssh_port,
            mgmt_address=args.mgmt_address or None,
            mgmt_device=args.mgmt_device,
            data_dir=args.data_dir.rstrip("/"),
            run_dir=args.run_dir.rstrip("/"),
            etc=args.etc.rstrip("/"),
            vem_backend=args.vem_backend,
        )
        text = write_deployment(plan)
    except (ValueError, OSError) as exc:
        print(f"openvsm init: {exc}", file=sys.stderr)
        return 2
    print(text, end="")
    return 0


__all__ = ["PairSecrets", "Plan", "cli_main", "generate_secrets", "write_deployment"]
