"""Pair credentials and TLS contexts (issue 12 point 5).

A VSM pair shares ONE certificate and private key (``pair.crt``,
``pair.key``), generated once per pair (``generate_pair_credentials``: by
``openvsm lab`` and ``openvsm init``) and copied to both nodes, so that a
client behind the shared management address always sees the same
certificate. The certificate is self-signed and is its own trust anchor:
clients trust exactly it (lab.json ``ca``).

Uses:

- REST (HTTPS): ``rest_server_context``; clients ``client_context(ca)``.
- The replication stream: mutual TLS with the pair certificate on both
  ends (``sync_server_context`` requires the client to present it,
  ``sync_client_context`` presents it and accepts only it). Whoever does not
  hold ``pair.key`` cannot complete a handshake, so a connection never
  reaches the replication protocol (and never replaces the live stream)
  before it proved it is the peer VSM; the stream (snapshots carry user
  password hashes) is encrypted.

``openvsm keys`` (``cli_main``) makes the frame keys of
``openvsm.wire.keys`` for operators: a new pair or VEM key, or one host's key
derived from the VEM key (a new host, a rotation).

Generation runs the ``openssl`` command (present wherever Python's ``ssl``
is); the key file is written 0600 and nothing is readable by others.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import shutil
import ssl
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

CERT_NAME: Final = "pair.crt"
KEY_NAME: Final = "pair.key"
DAYS: Final = 3650


class CredentialsError(Exception):
    """The pair credentials could not be made or read; the text is for an operator."""


@dataclass(frozen=True)
class PairCredentials:
    cert: Path
    key: Path


def _san(hosts: Iterable[str]) -> str:
    entries: list[str] = []
    for host in dict.fromkeys(["127.0.0.1", "localhost", *hosts]):
        try:
            ipaddress.ip_address(host)
            entries.append(f"IP:{host}")
        except ValueError:
            entries.append(f"DNS:{host}")
    return ",".join(entries)


def generate_pair_credentials(
    directory: Path, *, hosts: Iterable[str] = (), common_name: str = "openvsm-pair"
) -> PairCredentials:
    """Write a new ``pair.crt`` / ``pair.key`` (0600) in ``directory``; return their paths.

    ``hosts``: the names and addresses clients reach the pair by (both
    nodes' management addresses, the shared address); 127.0.0.1 and
    localhost are always included. Existing files are replaced atomically.
    """
    openssl = shutil.which("openssl")
    if openssl is None:
        raise CredentialsError("the openssl command is needed to make the pair certificate")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    with tempfile.TemporaryDirectory(dir=directory, prefix=".pair-") as tmp:
        key, cert = Path(tmp) / KEY_NAME, Path(tmp) / CERT_NAME
        cmd = [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            str(DAYS),
            "-subj",
            f"/CN={common_name}",
            "-addext",
            f"subjectAltName={_san(hosts)}",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
        ]
        old = os.umask(0o077)
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=60)
        finally:
            os.umask(old)
        if done.returncode != 0:
            raise CredentialsError(f"openssl failed: {done.stderr.strip()[-500:]}")
        os.chmod(key, 0o600)
        os.chmod(cert, 0o600)
        final = PairCredentials(cert=directory / CERT_NAME, key=directory / KEY_NAME)
        os.replace(key, final.key)
        os.replace(cert, final.cert)
    return final


def _load(ctx: ssl.SSLContext, cert: Path, key: Path) -> ssl.SSLContext:
    try:
        ctx.load_cert_chain(str(cert), str(key))
    except (OSError, ssl.SSLError) as exc:
        raise CredentialsError(f"cannot load the pair certificate {cert} / {key}: {exc}") from None
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def rest_server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """HTTPS server side (REST, status/metrics)."""
    return _load(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), cert, key)


def client_context(ca: Path) -> ssl.SSLContext:
    """A client trusting only the pair certificate ``ca`` (hostname checked)."""
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def sync_server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """Standby side of the replication stream: the client must present the pair certificate."""
    ctx = _load(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), cert, key)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cafile=str(cert))
    return ctx


def sync_client_context(cert: Path, key: Path) -> ssl.SSLContext:
    """Active side of the replication stream: present the pair certificate, accept only it.

    No hostname check: the peer is whoever holds the pair key, at whatever
    control address the configuration names.
    """
    ctx = _load(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), cert, key)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cafile=str(cert))
    return ctx


def sync_tls(cert: Path | None, key: Path | None, *, server: bool) -> ssl.SSLContext | None:
    """The replication stream's context from a node's ``[tls]`` files (None without them)."""
    if cert is None or key is None:
        return None
    return sync_server_context(cert, key) if server else sync_client_context(cert, key)


# ---- frame keys (issue 12 point 1: openvsm.wire.keys) ---------------------------

KEYS_USAGE = """usage: openvsm keys new --out FILE
       openvsm keys host --vem-key FILE --host-uuid UUID --out FILE

new:  a fresh random key (a pair key, or a VEM key: a rotation's next one)
host: the key of one VEM host, derived from the domain VEM key and its host
      UUID (the [vem] host_uuid of its vem.toml); the host's key_file
Keys are read from and written to files (mode 0600, never overwritten),
never taken on the command line (ps shows it)."""


def new_key() -> str:
    """A fresh frame key (64 hex characters)."""
    return secrets.token_hex(32)


def write_key_file(path: Path, key: str) -> None:
    """``key`` in a new file of mode 0600 (an existing file is never replaced)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def cli_main(argv: list[str]) -> int:
    """``openvsm keys``: make a key, or derive a host's key (see ``KEYS_USAGE``)."""
    import argparse

    from openvsm.config import ConfigError, read_secret_file
    from openvsm.wire.keys import derive_host_key

    parser = argparse.ArgumentParser(prog="openvsm keys", usage=KEYS_USAGE)
    parser.add_argument("what", choices=("new", "host"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--vem-key", type=Path, help="host: the domain VEM key file")
    parser.add_argument("--host-uuid", default="", help="host: the host's UUID")
    args = parser.parse_args(argv)
    try:
        if args.what == "new":
            key = new_key()
        else:
            if args.vem_key is None or not args.host_uuid.strip():
                raise ConfigError("host: --vem-key FILE and --host-uuid UUID are needed")
            vem_key = read_secret_file(args.vem_key, "--vem-key", private=True)
            key = derive_host_key(vem_key.encode(), args.host_uuid.strip())
        write_key_file(args.out, key)
    except (ConfigError, OSError) as exc:
        print(f"openvsm keys: {exc}", file=sys.stderr)
        return 2
    print(f"openvsm keys: wrote {args.out} (mode 0600)")
    return 0
