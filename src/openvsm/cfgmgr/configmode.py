"""Configuration mode of the CLI on a node: a ``ConfigSession`` per operator
session, each line's ops committed (and replicated) before the next line.

Accounting: a committed line is logged by the store with its change; a
refused line is logged as FAILURE (local only, like NX-OS's accounting log).
"""

from __future__ import annotations

import time
from typing import Any

from openvsm.cfgmgr.configsession import ConfigSession, Mode
from openvsm.cfgmgr.host import Committer
from openvsm.cli.server import CliCommandError, CliSession
from openvsm.cli.views import port_profile_row
from openvsm.ipc import IpcError
from openvsm.masking import mask_secrets
from openvsm.store.runningconfig import running_config_lines


class ConfigExecutor:
    def __init__(self, cm: Committer) -> None:
        self.cm = cm

    def begin(self, session: CliSession) -> None:
        session.config_state = ConfigSession(
            self.cm.store, hostname=self.cm.cfg.hostname, user=session.user, mode=Mode.CONFIG
        )

    def _context(self, cs: ConfigSession, line: str) -> str:
        """The accounting text of a line: sub-mode commands carry their context;
        passwords never reach the log."""
        text = mask_secrets(line.strip())
        first = text.split(" ", 1)[0].lower()
        if first in ("port-profile", "vlan", "no", "end", "exit", "username"):
            return text
        if cs.mode is Mode.PORT_PROFILE and cs.profile:
            return f"port-profile {cs.profile} ; {text}"
        if cs.mode is Mode.VLAN and cs.vlans:
            return f"vlan {','.join(str(v) for v in cs.vlans)} ; {text}"
        return text

    async def execute(self, line: str, session: CliSession) -> tuple[str, bool]:
        cs = session.config_state
        if not isinstance(cs, ConfigSession):
            self.begin(session)
            cs = session.config_state
            assert isinstance(cs, ConfigSession)
        command = self._context(cs, line)
        saved = (cs.mode, cs.profile, cs.vlans)
        result = cs.execute(line)
        if result.error is not None:
            self.cm.account(user=session.user, command=command, result="FAILURE")
            return result.error, True
        if result.ops:
            try:
                await self.cm.commit(
                    list(result.ops), user=session.user, source="cli", command=command
                )
            except IpcError as exc:
                cs.mode, cs.profile, cs.vlans = saved
                self.cm.account(user=session.user, command=command, result="FAILURE")
                return str(exc) if str(exc).startswith("%") else f"% {exc}", True
        if cs.mode is Mode.EXEC or result.close:
            session.exit_to_exec()
        else:
            session.mode = cs.mode.value
        return result.output, False

    def running_config(self) -> dict[str, Any]:
        return {
            "time": time.strftime("%a %b %d %H:%M:%S %Y", time.localtime(self.cm.wall())),
            "lines": running_config_lines(self.cm.store),
        }

    def port_profiles(self, name: str | None) -> dict[str, Any]:
        profiles = self.cm.store.list("port_profile")
        if name is not None and name not in profiles:
            raise CliCommandError(f"ERROR: port-profile {name} does not exist")
        assigned: dict[str, list[str]] = {}
        for veth in self.cm.store.list("veth").values():
            assigned.setdefault(str(veth.get("port_profile", "")), []).append(str(veth.get("name")))
        rows = [
            port_profile_row(body, sorted(assigned.get(key, [])))
            for key, body in sorted(profiles.items())
            if name is None or key == name
        ]
        return {"TABLE_port_profile": {"ROW_port_profile": rows}}
