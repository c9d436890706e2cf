"""The SSH server of a VSM node (asyncssh): the operator's and the automation
tools' way in.

Theory of operation.

Listeners: one per ``[ssh] listen`` address (the node's own management
address), plus the pair's shared management address while this node holds it
(``add_listener``/``remove_listener``, driven by ``openvsm.mgmt.address``).
Both nodes serve the same host key (``[ssh] host_key``, one file generated
per pair by ``openvsm init`` or the lab), so a client behind the shared
address sees one key whichever node is active.

Authentication (``_Server``): password or public key, for users configured in
the store (``username NAME password ... role ...``, ``username NAME sshkey
"ssh-ed25519 ..."``). The user record is read from cfgmgr over IPC; the
password is checked by ``openvsm.passwords.PasswordGate`` (scrypt in its
worker pool, an unknown user checked against a dummy hash of the same cost,
failures limited per source and per user); every failure is delayed
(``login_delay``) in the connection's own task. Public-key logins are not
limited: a key cannot be guessed, and its holder must get in during a
guessing flood. asyncssh's
``login_timeout`` ends a connection that never completes authentication.

Sessions (``_session``) are SHELL's ``ShellSession`` (openvsm.cli.session)
over ``SshBackend``: every line goes to cfgmgr's CLI (IPC op ``ssh_cli``) with
the logged-in user, so it runs with that user's role, is accounted under
that user and shows in ``show users`` (line ``ssh``, origin the client's
address); each session has its own IPC connection, so a session waiting for
a slow commit holds no other. An exec request (``ssh admin@vsm "show
module"``) runs its line and exits 0, or 1 on a CLI error. A PTY shell feeds
the client's keys to ``TerminalDriver`` (echo, ``?`` help, Tab, Ctrl-Z,
``--More--``, history; lines bounded at ``MAX_LINE``). A shell without a PTY
(scripts) is split into lines here; a line longer than ``MAX_LINE`` is
refused with a ``%`` error instead of being buffered. Output is written with
a deadline (``[ssh] write_timeout_s``, 30 s): a client that never reads is disconnected
when its channel window stays full, and stalls nothing but its own session
task. ``max_sessions`` bounds concurrent sessions; one beyond it is told so
and closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncssh

from openvsm.cli.session import ShellSession, new_session_id
from openvsm.cli.terminal import TerminalDriver, crlf
from openvsm.config import Endpoint, SshConfig
from openvsm.ipc import IpcClient, IpcError
from openvsm.passwords import FailureLimiter, PasswordGate, Verdict

log = logging.getLogger("mgmt.ssh")
logging.getLogger("asyncssh").setLevel(logging.WARNING)

MAX_LINE = 4096
LOGIN_TIMEOUT = 30.0
BANNER = "openvsm Virtual Supervisor Module\n"


@dataclass
class LoginCounters:
    ok: int = 0
    wrong: int = 0  # wrong password, unknown user or no matching key
    unknown_user: int = 0
    limited: int = 0  # too many recent failures of this source or user
    busy: int = 0  # every password worker busy and the queue full


@dataclass
class SshCounters:
    login: LoginCounters = field(default_factory=LoginCounters)
    sessions_opened: int = 0
    sessions_refused: int = 0
    commands: int = 0
    oversized_lines: int = 0
    slow_readers_closed: int = 0
    store_unavailable: int = 0

    def as_dict(self) -> dict[str, int]:
        out = {f"login_{k}": v for k, v in vars(self.login).items()}
        out.update({k: v for k, v in vars(self).items() if k != "login"})
        return out


def _key_text(key: asyncssh.SSHKey) -> str:
    """``TYPE BASE64`` of a public key (OpenSSH, no comment)."""
    raw = key.export_public_key("openssh").decode().split()
    return " ".join(raw[:2])


class SshDaemon:
    """Listeners, authentication and sessions (see the module doc)."""

    def __init__(
        self,
        cfg: SshConfig,
        cfgmgr_sock: Path,
        *,
        hostname: Callable[[], str] = lambda: "switch",
    ) -> None:
        self.cfg = cfg
        self.cfgmgr_sock = cfgmgr_sock
        self.counters = SshCounters()
        limiter = FailureLimiter(
            max_failures=cfg.max_failures, window_s=cfg.failure_window, max_keys=8192
        )
        # The hash is looked up over IPC (user_record), then check_stored.
        self.passwords = PasswordGate(
            lambda _user: None, workers=2, max_pending=18, limiter=limiter
        )
        self.store = IpcClient(cfgmgr_sock, timeout=5.0)
        self.host_key = asyncssh.read_private_key(str(cfg.host_key))
        self._listeners: dict[str, asyncssh.SSHAcceptor] = {}
        self._ids = itertools.count(1)
        self.sessions: dict[str, dict[str, Any]] = {}
        self.hostname = hostname

    # ---- listeners --------------------------------------------------------
    async def start(self) -> None:
        for ep in self.cfg.listen:
            await self.add_listener(ep)

    async def add_listener(self, ep: Endpoint) -> None:
        if str(ep) in self._listeners:
            return
        acceptor = await asyncssh.listen(
            ep.host,
            ep.port,
            server_host_keys=[self.host_key],
            server_factory=lambda: _Server(self),
            process_factory=self._session,
            login_timeout=LOGIN_TIMEOUT,
            line_editor=False,  # SHELL's TerminalDriver edits lines (echo, ?, Tab)
            keepalive_interval=15,
            keepalive_count_max=4,
            reuse_address=True,
            encoding="utf-8",
            errors="replace",
        )
        self._listeners[str(ep)] = acceptor
        log.info("SSH server listening on %s", ep)

    async def remove_listener(self, ep: Endpoint) -> None:
        acceptor = self._listeners.pop(str(ep), None)
        if acceptor is not None:
            acceptor.close()
            with contextlib.suppress(Exception):
                await acceptor.wait_closed()
            log.info("SSH server stopped listening on %s", ep)

    def listening(self) -> list[str]:
        return sorted(self._listeners)

    async def stop(self) -> None:
        for key in list(self._listeners):
            host, _, port = key.rpartition(":")
            await self.remove_listener(Endpoint(host, int(port)))
        self.passwords.close()
        self.store.close()

    # ---- authentication -------------------------------------------------
    async def user_record(self, user: str) -> dict[str, Any] | None:
        try:
            body = await self.store.call("get", kind="user", key=user)
        except IpcError:
            self.counters.store_unavailable += 1
            return None
        return body if isinstance(body, dict) else None

    async def check_password(self, user: str, password: str, source: str) -> bool:
        gate = self.passwords
        if gate.limited(user, source):
            self.counters.login.limited += 1
            await asyncio.sleep(self.cfg.login_delay)
            return False
        body = await self.user_record(user)
        stored = body.get("password_hash") if body else None
        busy = gate.counters.busy
        verdict = await gate.check_stored(
            user, stored if isinstance(stored, str) and stored else None, password, source=source
        )
        if verdict is Verdict.OK:
            return self._logged_in(user, source)
        if gate.counters.busy != busy:
            self.counters.login.busy += 1
            gate.failed(user, source)  # refused unchecked: still a failure
        elif verdict is Verdict.LIMITED:
            self.counters.login.limited += 1
        else:
            self.counters.login.wrong += 1
            if body is None:
                self.counters.login.unknown_user += 1
        log.warning("SSH login of %s from %s failed (%s)", user, source, verdict.value)
        await asyncio.sleep(self.cfg.login_delay)
        return False

    async def check_key(self, user: str, key: asyncssh.SSHKey, source: str) -> bool:
        # No rate limit here: a key cannot be guessed (asyncssh checks the
        # signature), and an operator with a key must get in while someone
        # guesses passwords from the same source or for the same user.
        body = await self.user_record(user)
        stored = body.get("sshkey") if body else None
        ok = isinstance(stored, str) and stored.split()[:2] == _key_text(key).split()
        if ok:
            return self._logged_in(user, source)
        # A client offers its keys one by one before trying a password: an
        # offered key that does not match is not a failed login.
        return False

    def _logged_in(self, user: str, source: str) -> bool:
        self.counters.login.ok += 1
        self.passwords.succeeded(user)
        log.info("SSH login of %s from %s", user, source)
        return True

    # ---- sessions -------------------------------------------------------
    async def _session(self, process: asyncssh.SSHServerProcess[str]) -> None:
        user = str(process.get_extra_info("username") or "")
        peer = process.get_extra_info("peername")
        source = str(peer[0]) if peer else "?"
        if len(self.sessions) >= self.cfg.max_sessions:
            self.counters.sessions_refused += 1
            with contextlib.suppress(Exception):
                process.stderr.write("% Too many SSH sessions on this supervisor\n")
            process.exit(1)
            return
        shell = ShellSession(
            SshBackend(self.cfgmgr_sock, user=user, origin=source),
            interactive=process.command is None,
            session_id=new_session_id("ssh"),
        )
        session_id = shell.session_id
        self.sessions[session_id] = {"user": user, "source": source, "since": time.time()}
        self.counters.sessions_opened += 1
        try:
            if process.command is not None:
                status = await self._exec(process, shell, process.command)
            elif process.get_terminal_type() is not None:
                status = await self._pty_shell(process, shell)
            else:
                status = await self._line_shell(process, shell)
            process.exit(status)
        except (asyncssh.Error, ConnectionError, BrokenPipeError, TimeoutError, IpcError) as exc:
            log.info("SSH session %s of %s ended: %s", session_id, user, exc)
            if isinstance(exc, TimeoutError):
                self.counters.slow_readers_closed += 1
            process.close()
        finally:
            self.sessions.pop(session_id, None)
            with contextlib.suppress(Exception):
                await shell.close()

    async def _write(self, process: asyncssh.SSHServerProcess[str], text: str) -> None:
        if not text:
            return
        process.stdout.write(text)
        async with asyncio.timeout(self.cfg.write_timeout):
            await process.stdout.drain()

    async def _exec(
        self, process: asyncssh.SSHServerProcess[str], shell: ShellSession, command: str
    ) -> int:
        """``ssh admin@vsm "show module"``: one line, exit status 1 on a CLI error."""
        if len(command) > MAX_LINE:
            self.counters.oversized_lines += 1
            await self._write(process, f"% Line too long (at most {MAX_LINE} characters)\n")
            return 1
        self.counters.commands += 1
        out: list[str] = []
        status = await shell.run_script(command, out.append)
        await self._write(process, "".join(out))
        return status

    async def _pty_shell(self, process: asyncssh.SSHServerProcess[str], shell: ShellSession) -> int:
        """A terminal: keys go through SHELL's TerminalDriver (echo, ``?``, Tab,
        Ctrl-Z, ``--More--``); its output is sent with the write deadline."""
        pending: list[str] = []
        driver = TerminalDriver(shell, pending.append, echo=True)

        async def flush() -> None:
            text, pending[:] = "".join(pending), []
            await self._write(process, text)

        pending.append(crlf(BANNER))
        await driver.start()
        columns, rows, *_ = process.get_terminal_size()
        if rows or columns:
            await shell.window(rows, columns or 80)
        await flush()
        while not driver.done:
            try:
                data = await process.stdin.read(4096)
            except asyncssh.BreakReceived:
                continue
            except asyncssh.TerminalSizeChanged as change:
                await shell.window(change.height, change.width or 80)
                continue
            if not data:
                return 0
            self.counters.commands += data.count("\r") or data.count("\n")
            await driver.feed(data)
            await flush()
        return 0

    async def _line_shell(
        self, process: asyncssh.SSHServerProcess[str], shell: ShellSession
    ) -> int:
        """A shell without a terminal (scripts): lines in, output and prompt out."""
        prompt = await shell.start() + " "
        await self._write(process, BANNER + prompt)
        reader = _LineReader(process)
        while True:
            line = await reader.readline()
            if line is None:
                return 0
            if line is _TOO_LONG:
                self.counters.oversized_lines += 1
                await self._write(
                    process, f"% Line too long (at most {MAX_LINE} characters)\n{prompt}"
                )
                continue
            self.counters.commands += 1
            reply = await shell.run(line.strip())
            if reply.exit:
                await self._write(process, reply.output)
                return 0
            prompt = reply.prompt + " "
            await self._write(process, reply.output + prompt)


class SshBackend:
    """``ShellSession`` backend of an SSH session: cfgmgr's ``ssh_cli`` op, which
    runs the line as the user SSH authenticated (cfgmgr accepts that claim only
    from a process of root or the node's own Unix user)."""

    def __init__(self, sock: Path, *, user: str, origin: str) -> None:
        self.user = user
        self.origin = origin
        # One connection per session: a session waiting for a commit holds no other.
        self._ipc = IpcClient(sock, timeout=60.0)

    async def request(
        self, action: str, line: str, session: str, interactive: bool
    ) -> dict[str, Any]:
        result = await self._ipc.call(
            "ssh_cli",
            line=line,
            session=session,
            action=action,
            interactive=interactive,
            user=self.user,
            origin=self.origin,
        )
        if not isinstance(result, dict) or not isinstance(result.get("output", ""), str):
            raise IpcError("malformed reply from cfgmgr")
        return result

    async def aclose(self) -> None:
        self._ipc.close()


_TOO_LONG = "\x00too-long\x00"


class _LineReader:
    """Lines of a session without a terminal, split here with a bound on the
    line length (a longer line is refused, never buffered)."""

    def __init__(self, process: asyncssh.SSHServerProcess[str]) -> None:
        self.process = process
        self._buf = ""
        self._discarding = False

    async def readline(self) -> str | None:
        while True:
            nl = self._buf.find("\n")
            if nl >= 0:
                line, self._buf = self._buf[:nl], self._buf[nl + 1 :]
                if self._discarding:
                    self._discarding = False
                    return _TOO_LONG
                return line.rstrip("\r")
            if len(self._buf) > MAX_LINE:
                self._buf = ""
                self._discarding = True
            chunk = await self.process.stdin.read(8192)
            if not chunk:
                return None
            self._buf += chunk


class _Server(asyncssh.SSHServer):
    def __init__(self, daemon: SshDaemon) -> None:
        self.daemon = daemon
        self.source = "?"

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        peer = conn.get_extra_info("peername")
        self.source = str(peer[0]) if peer else "?"

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return True

    async def validate_password(self, username: str, password: str) -> bool:
        return await self.daemon.check_password(username, password, self.source)

    def public_key_auth_supported(self) -> bool:
        return True

    async def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        return await self.daemon.check_key(username, key, self.source)


def generate_host_key(path: Path) -> None:
    """Write a new ed25519 host key (OpenSSH format, mode 0600) and its ``.pub``."""
    import os

    key = asyncssh.generate_private_key("ssh-ed25519")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key.export_private_key("openssh"))
    path.with_name(path.name + ".pub").write_bytes(key.export_public_key("openssh"))


__all__ = ["SshCounters", "SshDaemon", "generate_host_key"]
