"""A private Open vSwitch instance: ovsdb-server + ovs-vswitchd in one directory.

Owns the two OVS daemons of one (simulated or real) host when openvsm runs
OVS itself: the lab, the netns tests and the benchmark. Nothing is shared
with a system OVS: the database, the control sockets, the bridges' OpenFlow
management sockets, pid and log files all live in ``directory``. With
``netns`` both daemons run inside that network namespace (``ip netns exec``
execs in place, so the child's pid is the daemon's pid).

Bridges must use ``datapath_type=netdev`` (the userspace datapath): no
kernel module is needed.

Lifecycle: ``start()`` creates the database, starts both daemons as child
processes, waits until the database answers and returns the ``unix:``
remote of the database; ``stop()`` terminates them (SIGTERM, then SIGKILL),
reaps them and removes the directory if this instance created it. ``stop``
is idempotent and safe after a failed ``start``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

OVS_BINARIES = (
    "ovsdb-tool",
    "ovsdb-server",
    "ovs-vswitchd",
    "ovs-vsctl",
    "ovs-ofctl",
    "ovs-appctl",
)
SCHEMA_CANDIDATES = (
    "/usr/share/openvswitch/vswitch.ovsschema",
    "/usr/local/share/openvswitch/vswitch.ovsschema",
)


class OvsUnavailableError(RuntimeError):
    """OVS binaries or schema are missing, or the daemons did not come up."""


def missing_binaries() -> list[str]:
    """OVS tools not found on PATH (also searching the sbin directories)."""
    return [b for b in OVS_BINARIES if _which(b) is None]


def _which(binary: str) -> str | None:
    path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin:/usr/local/sbin"
    return shutil.which(binary, path=path)


def _schema() -> str:
    env = os.environ.get("OVS_PKGDATADIR")
    candidates = ([os.path.join(env, "vswitch.ovsschema")] if env else []) + list(SCHEMA_CANDIDATES)
    for candidate in candidates:
        if os.path.exists(candidate):
            return candidate
    raise OvsUnavailableError(
        "Open vSwitch schema vswitch.ovsschema not found "
        f"(looked in {', '.join(candidates)}); install openvswitch-switch"
    )


class OvsInstance:
    """ovsdb-server and ovs-vswitchd with a private run/db/log directory."""

    def __init__(self, directory: str | Path, netns: str | None = None) -> None:
        self.directory = Path(directory)
        self.netns = netns
        self.db_sock = self.directory / "db.sock"
        self.vswitchd_ctl = self.directory / "ovs-vswitchd.ctl"
        self.ovsdb_ctl = self.directory / "ovsdb-server.ctl"
        self._procs: list[subprocess.Popen[bytes]] = []
        self._created_dir = False

    @property
    def remote(self) -> str:
        """The ovsdb remote (``unix:DIR/db.sock``) for ovs-vswitchd, ovsdbapp, ovs-vsctl."""
        return f"unix:{self.db_sock}"

    @property
    def env(self) -> dict[str, str]:
        """Environment for OVS tools so their defaults point into the private directory."""
        env = dict(os.environ)
        d = str(self.directory)
        env.update(OVS_RUNDIR=d, OVS_DBDIR=d, OVS_LOGDIR=d, OVS_SYSCONFDIR=d)
        return env

    def _wrap(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.netns, *argv] if self.netns else argv

    def start(self, timeout: float = 10.0) -> str:
        """Start both daemons; return the ovsdb remote. Raises OvsUnavailableError."""
        missing = missing_binaries()
        if missing:
            raise OvsUnavailableError(
                f"Open vSwitch binaries not found: {', '.join(missing)}; "
                "install openvswitch-switch (apt-get install -y openvswitch-switch)"
            )
        if len(str(self.db_sock)) > 100:
            raise OvsUnavailableError(f"{self.db_sock}: path too long for a unix socket")
        schema = _schema()
        if not self.directory.exists():
            self.directory.mkdir(parents=True)
            self._created_dir = True
        d = self.directory
        try:
            db = d / "conf.db"
            if not db.exists():
                subprocess.run(
                    [_which("ovsdb-tool") or "ovsdb-tool", "create", str(db), schema],
                    check=True,
                    capture_output=True,
                    env=self.env,
                )
            ovsdb_server = [
                _which("ovsdb-server") or "ovsdb-server",
                str(db),
                f"--remote=punix:{self.db_sock}",
                f"--unixctl={self.ovsdb_ctl}",
                f"--pidfile={d / 'ovsdb-server.pid'}",
                f"--log-file={d / 'ovsdb-server.log'}",
                "-vconsole:off",
                "--no-chdir",
            ]
            self._spawn(ovsdb_server, d / "ovsdb-server.out")
            self._wait(lambda: self._vsctl_ok(), timeout, "ovsdb-server")
            subprocess.run(
                [
                    _which("ovs-vsctl") or "ovs-vsctl",
                    f"--db={self.remote}",
                    "--no-wait",
                    "init",
                    "--",
                    "set",
                    "Open_vSwitch",
                    ".",
                    # veth hands the userspace datapath packets with partial
                    # checksums (tx offload); with TSO support OVS completes them.
                    "other_config:userspace-tso-enable=true",
                ],
                check=True,
                capture_output=True,
                env=self.env,
            )
            vswitchd = [
                _which("ovs-vswitchd") or "ovs-vswitchd",
                self.remote,
                f"--unixctl={self.vswitchd_ctl}",
                f"--pidfile={d / 'ovs-vswitchd.pid'}",
                f"--log-file={d / 'ovs-vswitchd.log'}",
                "-vconsole:off",
                "--no-chdir",
            ]
            self._spawn(vswitchd, d / "ovs-vswitchd.out")
            self._wait(self.vswitchd_ctl.exists, timeout, "ovs-vswitchd")
        except (OSError, subprocess.CalledProcessError, OvsUnavailableError) as exc:
            self.stop()
            if isinstance(exc, OvsUnavailableError):
                raise
            detail = exc.stderr.decode(errors="replace") if hasattr(exc, "stderr") else ""
            raise OvsUnavailableError(f"starting OVS in {d} failed: {exc} {detail}") from exc
        return self.remote

    def _spawn(self, argv: list[str], out: Path) -> None:
        with open(out, "wb") as log:
            proc = subprocess.Popen(
                self._wrap(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )
        self._procs.append(proc)

    def _vsctl_ok(self) -> bool:
        if not self.db_sock.exists():
            return False
        result = subprocess.run(
            [_which("ovs-vsctl") or "ovs-vsctl", f"--db={self.remote}", "--timeout=2", "show"],
            capture_output=True,
            env=self.env,
        )
        return result.returncode == 0

    def _wait(self, ready: object, timeout: float, what: str) -> None:
        assert callable(ready)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for proc in self._procs:
                if proc.poll() is not None:
                    raise OvsUnavailableError(
                        f"{what} exited with status {proc.returncode}; see {self.directory}"
                    )
            if ready():
                return
            time.sleep(0.02)
        raise OvsUnavailableError(f"{what} did not come up within {timeout:.0f} s")

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._procs if p.poll() is None]

    def running(self) -> bool:
        return bool(self._procs) and all(p.poll() is None for p in self._procs)

    def kill(self) -> None:
        """SIGKILL both daemons (a crash), leaving files in place."""
        for proc in self._procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
        for proc in self._procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)

    def stop(self, remove: bool | None = None) -> None:
        """Terminate and reap both daemons; remove the directory if we created it."""
        for proc in reversed(self._procs):  # vswitchd first, then the database
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
        self._procs.clear()
        if remove if remove is not None else self._created_dir:
            shutil.rmtree(self.directory, ignore_errors=True)

    def vsctl(self, *args: str, check: bool = True) -> str:
        """Run ovs-vsctl against this instance's database."""
        return self._tool("ovs-vsctl", f"--db={self.remote}", "--timeout=10", *args, check=check)

    def ofctl(self, *args: str, check: bool = True) -> str:
        """Run ovs-ofctl (bridge names resolve to DIR/<bridge>.mgmt)."""
        return self._tool("ovs-ofctl", *args, check=check)

    def appctl(self, *args: str, check: bool = True) -> str:
        """Run ovs-appctl against this instance's ovs-vswitchd."""
        return self._tool("ovs-appctl", "-t", str(self.vswitchd_ctl), *args, check=check)

    def _tool(self, binary: str, *args: str, check: bool) -> str:
        result = subprocess.run(
            [_which(binary) or binary, *args], capture_output=True, text=True, env=self.env
        )
        if check and result.returncode != 0:
            raise OvsUnavailableError(f"{binary} {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout

    def __enter__(self) -> OvsInstance:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
