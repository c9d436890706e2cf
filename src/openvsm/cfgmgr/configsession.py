"""NX-OS configuration commands, sans-IO (DESIGN §4, specs/cli-output.md).

Owns the configuration-mode language of the CLI: it turns one line into the
store ops to commit, a mode change, text output, or an error that changed
nothing. It never writes: ``ConfigSession.execute`` reads a *store view*
(anything with ``get(kind, key)`` and ``list(kind)``) and returns a
``ConfigResult``; the caller (``cfgmgr/configmode.py``) commits
``result.ops`` (one change) before it executes the next line of the session.
Lines are split by the CLI's tokenizer (``cli/tokens.py``); what the
configuration reads back as is ``store/runningconfig.py``.

Modes (``Mode``) and transitions of a session::

    exec --configure terminal--> config --port-profile NAME--> config-port-prof
                                  config --vlan LIST--------> config-vlan
    config-port-prof / config-vlan --exit--> config --exit--> exec
    any configuration mode --end--> exec

In a sub-mode, a line that is not a sub-mode command is tried as a
``config`` command and leaves the sub-mode (as on NX-OS: ``vlan 20`` inside
a port-profile moves to that VLAN, ``no vlan 20`` returns to ``config``).
Keywords may be abbreviated to a unique prefix (``sw mo tr``). Lines
starting with ``!`` are comments and do nothing, so the OpenStack section
of the running configuration is skipped when it is replayed.

Objects whose body has ``owner == "openstack"`` belong to the Neutron
driver: the CLI refuses to change them (see ``_openstack_refusal``).
"""

from __future__ import annotations

import base64
import binascii
import enum
import re
import uuid
from dataclasses import dataclass
from typing import Any, Final

from openvsm.cli.tokens import INCOMPLETE, Line, LineError
from openvsm.passwords import hash_password, parse_hash
from openvsm.roles import Role
from openvsm.store.pss import Op
from openvsm.store.runningconfig import StoreView, is_openstack, natural_key
from openvsm.vlans import VlanListError, default_vlan_name, format_vlan_list, parse_vlan_list

ROLES: Final = tuple(r.value for r in Role)
DEFAULT_ROLE: Final = Role.NETWORK_OPERATOR.value
MAX_DESCRIPTION: Final = 80
MAX_VLAN_NAME: Final = 32
MAX_PORT_SECURITY: Final = 1025
MAX_CHANNEL_GROUP: Final = 4096

_PROFILE_NAME = re.compile(r"[A-Za-z0-9_.:/@+\-]{1,80}")
_USER_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,31}")
_PROFILE_NS = uuid.UUID("6f70656e-7673-6d00-0000-706f72747072")  # stable ids of CLI profiles

COPY_OUTPUT: Final = (
    "[########################################] 100%\n"
    "Copy complete: the configuration is always durable here "
    "(every change is committed to the store before it is acknowledged).\n"
)


class Mode(enum.Enum):
    EXEC = "exec"
    CONFIG = "config"
    PORT_PROFILE = "config-port-prof"
    VLAN = "config-vlan"


@dataclass(frozen=True, slots=True)
class ConfigResult:
    """The outcome of one line. ``error`` set means nothing is to be committed."""

    ops: tuple[Op, ...] = ()
    output: str = ""  # informational text / warnings, newline-terminated
    error: str | None = None  # full NX-OS error text (echo, caret, message)
    mode: Mode = Mode.EXEC
    prompt: str = "switch#"
    close: bool = False  # ``exit`` in exec mode: end the session


_Fail = LineError


def new_port_profile(name: str, ptype: str) -> dict[str, Any]:
    """A CLI-created port profile with NX-OS defaults (disabled until ``state enabled``)."""
    return {
        "name": name,
        "type": ptype,
        "mode": "access",
        "access_vlan": 1,
        "allowed_vlans": [],  # trunk: empty = all configured VLANs
        "enabled": False,
        "shutdown": False,
        "description": "",
        "max_macs": 0,
        "channel_group": 0,
        "lacp_mode": "",
        "owner": "cli",
        "uuid": str(uuid.uuid5(_PROFILE_NS, name)),
        "inherit": "",
        "bridge_domain": "",
        "dynamic": False,
    }


def _openstack_refusal(what: str) -> _Fail:
    return _Fail(
        f"% {what} is managed by OpenStack (owner openstack): change it through Neutron.\n"
        "% A change made here would leave the VSM and OpenStack out of sync, and the\n"
        "% Neutron driver's next sync would conflict with it or overwrite it.\n"
    )


class _Line(Line):
    """A configuration line: the shared tokenizer plus VLAN-list arguments."""

    def vlan_list(self) -> list[int]:
        index = self.i
        word = self.arg()
        try:
            return parse_vlan_list(word)
        except ValueError:
            raise self.fail(at=index) from None
        except VlanListError as exc:
            raise _Fail(exc.text) from None


SSH_KEY_TYPES: Final = (
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
)


def parse_ssh_public_key(text: str) -> str | None:
    """``TYPE BASE64 [comment]`` -> the normalised ``TYPE BASE64`` or None.

    The blob must decode and name its own type (SSH wire format: a 4-byte
    length, then the type string), so a truncated or pasted-wrong key is
    refused at configuration time, not at the first login."""
    parts = text.split()
    if len(parts) < 2 or parts[0] not in SSH_KEY_TYPES or len(parts[1]) > 8192:
        return None
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(blob) < 4:
        return None
    n = int.from_bytes(blob[:4], "big")
    if blob[4 : 4 + n] != parts[0].encode():
        return None
    return f"{parts[0]} {parts[1]}"


_PP_WORDS: Final = ("description", "switchport", "state", "shutdown", "channel-group")
_VLAN_WORDS: Final = ("name",)
_CONFIG_WORDS: Final = ("port-profile", "vlan", "username")


class ConfigSession:
    """One operator's configuration session (mode and sub-mode context)."""

    def __init__(
        self,
        view: StoreView,
        *,
        hostname: str = "switch",
        user: str = "admin",
        mode: Mode = Mode.EXEC,
    ) -> None:
        if mode in (Mode.PORT_PROFILE, Mode.VLAN):
            raise ValueError("a session starts in exec or config mode")
        self.view = view
        self.hostname = hostname
        self.user = user
        self.mode: Mode = mode
        self.profile = ""  # config-port-prof: the profile being edited
        self.vlans: tuple[int, ...] = ()  # config-vlan: the VLANs being edited

    @property
    def prompt(self) -> str:
        if self.mode is Mode.EXEC:
            return f"{self.hostname}#"
        return f"{self.hostname}({self.mode.value})#"

    def execute(self, line: str) -> ConfigResult:
        """Run one line. Nothing changes (neither ops nor mode) when it fails."""
        saved = (self.mode, self.profile, self.vlans)
        line = line.rstrip("\r\n")
        try:
            if not line.strip() or line.lstrip().startswith("!"):
                return self._result()
            ops, output, close = self._dispatch(_Line(line))
        except _Fail as exc:
            self.mode, self.profile, self.vlans = saved
            return ConfigResult(error=exc.text, mode=self.mode, prompt=self.prompt)
        return self._result(tuple(ops), output, close)

    def _result(
        self, ops: tuple[Op, ...] = (), output: str = "", close: bool = False
    ) -> ConfigResult:
        return ConfigResult(ops=ops, output=output, mode=self.mode, prompt=self.prompt, close=close)

    # --- dispatch ---

    def _dispatch(self, ln: _Line) -> tuple[list[Op], str, bool]:
        if self.mode is Mode.EXEC:
            return self._exec(ln)
        first = ln.peek("end", "exit", "no", *_CONFIG_WORDS, *self._sub_words())
        if first == "end":
            ln.keyword("end")
            ln.end()
            self._to(Mode.EXEC)
            return [], "", False
        if first == "exit":
            ln.keyword("exit")
            ln.end()
            self._to(Mode.CONFIG if self.mode is not Mode.CONFIG else Mode.EXEC)
            return [], "", False
        if self.mode is not Mode.CONFIG and self._is_sub_command(ln):
            if self.mode is Mode.PORT_PROFILE:
                ops, out = self._port_profile_line(ln)
            else:
                ops, out = self._vlan_line(ln)
            return ops, out, False
        self._to(Mode.CONFIG)  # a global command leaves the sub-mode (restored on error)
        ops, out = self._config(ln)
        return ops, out, False

    def _sub_words(self) -> tuple[str, ...]:
        if self.mode is Mode.PORT_PROFILE:
            return _PP_WORDS
        if self.mode is Mode.VLAN:
            return _VLAN_WORDS
        return ()

    def _is_sub_command(self, ln: _Line) -> bool:
        """Whether the line belongs to the sub-mode (else: a config-level command)."""
        sub = self._sub_words()
        word = ln.peek("no", *_CONFIG_WORDS, *sub)
        if word == "no":
            probe = _Line(ln.line)
            probe.i = ln.i + 1
            return probe.peek(*_CONFIG_WORDS, *sub) in sub
        return word in sub

    def _to(self, mode: Mode) -> None:
        self.mode = mode
        if mode is not Mode.PORT_PROFILE:
            self.profile = ""
        if mode is not Mode.VLAN:
            self.vlans = ()

    def _exec(self, ln: _Line) -> tuple[list[Op], str, bool]:
        word = ln.keyword("configure", "copy", "exit", "end")
        if word == "configure":
            if not ln.at_end():
                ln.keyword("terminal")
            ln.end()
            self._to(Mode.CONFIG)
            return [], "Enter configuration commands, one per line. End with CNTL/Z.\n", False
        if word == "copy":
            ln.keyword("running-config")
            ln.keyword("startup-config")
            ln.end()
            return [], COPY_OUTPUT, False
        if word == "exit":
            ln.end()
            return [], "", True
        raise ln.fail(at=ln.i - 1)

    # --- config mode ---

    def _config(self, ln: _Line) -> tuple[list[Op], str]:
        negate = ln.peek("no", *_CONFIG_WORDS) == "no"
        if negate:
            ln.keyword("no")
        word = ln.keyword(*_CONFIG_WORDS)
        if word == "port-profile":
            return self._no_port_profile(ln) if negate else self._enter_port_profile(ln)
        if word == "vlan":
            return self._no_vlan(ln) if negate else self._enter_vlan(ln)
        return self._no_username(ln) if negate else self._username(ln)

    def _profile_name_arg(self, ln: _Line) -> tuple[str, str | None]:
        """``[type vethernet|ethernet] NAME`` -> (name, type or None)."""
        remaining = len(ln.words) - ln.i
        ptype: str | None = None
        if remaining >= 3 or (remaining == 2 and ln.peek("type") == "type"):
            ln.keyword("type")
            ptype = ln.keyword("vethernet", "ethernet")
        index = ln.i
        name = ln.arg()
        ln.end()
        if not _PROFILE_NAME.fullmatch(name):
            raise ln.fail(
                "% Invalid port-profile name (1-80 of letters, digits, _ . : / @ + -)", at=index
            )
        return name, ptype

    def _enter_port_profile(self, ln: _Line) -> tuple[list[Op], str]:
        name, ptype = self._profile_name_arg(ln)
        body = self.view.get("port_profile", name)
        ops: list[Op] = []
        if body is None:
            ops.append(Op("port_profile", name, new_port_profile(name, ptype or "vethernet")))
        elif is_openstack(body):
            raise _openstack_refusal(f"port-profile {name}")
        elif ptype is not None and body.get("type", "vethernet") != ptype:
            raise _Fail(
                f"% port-profile {name} already exists with type {body.get('type')}; "
                "names are unique across types\n"
            )
        self._to(Mode.PORT_PROFILE)
        self.profile = name
        return ops, ""

    def _no_port_profile(self, ln: _Line) -> tuple[list[Op], str]:
        name, ptype = self._profile_name_arg(ln)
        body = self.view.get("port_profile", name)
        if body is None or (ptype is not None and body.get("type", "vethernet") != ptype):
            raise _Fail(f"ERROR: port-profile {name} does not exist\n")
        if is_openstack(body):
            raise _openstack_refusal(f"port-profile {name}")
        users = sorted(
            (k for k, v in self.view.list("veth").items() if v.get("port_profile") == name),
            key=natural_key,
        )
        if users:
            shown = ", ".join(users[:5]) + (", ..." if len(users) > 5 else "")
            raise _Fail(
                f"% port-profile {name} is in use by {len(users)} interface(s) ({shown}); "
                "move them to another profile first\n"
            )
        children = sorted(
            k for k, v in self.view.list("port_profile").items() if v.get("inherit") == name
        )
        if children:
            raise _Fail(
                f"% port-profile {name} is inherited by {', '.join(children[:5])}; "
                "remove those first\n"
            )
        return [Op("port_profile", name, None)], ""

    def _enter_vlan(self, ln: _Line) -> tuple[list[Op], str]:
        ids = ln.vlan_list()
        ln.end()
        ops: list[Op] = []
        for n in ids:
            body = self.view.get("vlan", str(n))
            if is_openstack(body):
                raise _openstack_refusal(f"VLAN {n}")
            if body is None:
                ops.append(
                    Op("vlan", str(n), {"id": n, "name": default_vlan_name(n), "owner": "cli"})
                )
        self._to(Mode.VLAN)
        self.vlans = tuple(ids)
        return ops, ""

    def _no_vlan(self, ln: _Line) -> tuple[list[Op], str]:
        ids = ln.vlan_list()
        ln.end()
        if 1 in ids:
            raise _Fail("% The default VLAN 1 cannot be deleted\n")
        ops: list[Op] = []
        missing: list[int] = []
        for n in ids:
            body = self.view.get("vlan", str(n))
            if body is None:
                missing.append(n)
                continue
            if is_openstack(body):
                raise _openstack_refusal(f"VLAN {n}")
            ops.append(Op("vlan", str(n), None))
        out = ""
        if missing:
            out += f"Warning: VLAN(s) {format_vlan_list(missing)} did not exist\n"
        gone = set(ids) - set(missing)
        using = sorted(
            k
            for k, v in self.view.list("port_profile").items()
            if v.get("mode", "access") == "access" and v.get("access_vlan") in gone
        )
        if using:
            out += (
                f"Warning: port-profile(s) {', '.join(using)} use a deleted VLAN as access VLAN;"
                " their ports stop forwarding\n"
            )
        return ops, out

    def _username(self, ln: _Line) -> tuple[list[Op], str]:
        index = ln.i
        name = ln.arg()
        if not _USER_NAME.fullmatch(name):
            raise ln.fail("% Invalid user name (letters, digits, _ . -; at most 32)", at=index)
        existing = self.view.get("user", name)
        if ln.peek("password", "sshkey") == "sshkey":
            ln.keyword("sshkey")
            return self._username_sshkey(ln, name, existing)
        ln.keyword("password")
        pw_index = ln.i
        password = ln.arg()
        if password in ("0", "5") and not ln.at_end() and ln.peek("role") is None:
            # NX-OS: "password 0 CLEAR" / "password 5 HASH" (how running-config shows it)
            encrypted = password == "5"
            pw_index = ln.i
            password = ln.arg()
            if encrypted and parse_hash(password) is None:
                raise ln.fail("% Invalid password hash", at=pw_index)
            password_hash = password if encrypted else hash_password(password)
        else:
            password_hash = ""
        role = (existing or {}).get("role", DEFAULT_ROLE)
        if not ln.at_end():
            ln.keyword("role")
            role = ln.keyword(*ROLES)
        ln.end()
        if not password_hash:
            if len(password) < 4:
                raise ln.fail("% Password too short (at least 4 characters)", at=pw_index)
            password_hash = hash_password(password)
        body: dict[str, Any] = {"name": name, "password_hash": password_hash, "role": role}
        if existing and existing.get("sshkey"):
            body["sshkey"] = existing["sshkey"]
        return [Op("user", name, body)], ""

    def _username_sshkey(
        self, ln: _Line, name: str, existing: dict[str, Any] | None
    ) -> tuple[list[Op], str]:
        """``username NAME sshkey "ssh-ed25519 AAAA... [comment]"`` (OpenSSH format)."""
        index = ln.i
        if ln.at_end():
            raise ln.fail(INCOMPLETE)
        text = ln.line[ln.words[index][0] :].strip().strip('"').strip()
        ln.i = len(ln.words)
        key = parse_ssh_public_key(text)
        if key is None:
            raise ln.fail("% Invalid SSH public key (OpenSSH format: TYPE BASE64 [comment])", index)
        if existing is None:
            raise _Fail(f"% User {name} does not exist: configure its password and role first\n")
        return [Op("user", name, {**existing, "sshkey": key})], ""

    def _no_username(self, ln: _Line) -> tuple[list[Op], str]:
        name = ln.arg()
        if ln.peek("sshkey") == "sshkey":
            ln.keyword("sshkey")
            ln.end()
            body = self.view.get("user", name)
            if body is None:
                raise _Fail(f"% User {name} does not exist\n")
            return [Op("user", name, {k: v for k, v in body.items() if k != "sshkey"})], ""
        ln.end()
        if self.view.get("user", name) is None:
            raise _Fail(f"% User {name} does not exist\n")
        if name == "admin":
            raise _Fail("% User admin cannot be deleted\n")
        if name == self.user:
            raise _Fail(f"% User {name} is logged in here and cannot delete itself\n")
        return [Op("user", name, None)], ""

    # --- port-profile mode ---

    def _current_profile(self) -> dict[str, Any]:
        body = self.view.get("port_profile", self.profile)
        if body is None:
            raise _Fail(f"% port-profile {self.profile} no longer exists\n")
        if is_openstack(body):
            raise _openstack_refusal(f"port-profile {self.profile}")
        return dict(body)

    def _port_profile_line(self, ln: _Line) -> tuple[list[Op], str]:
        body = self._current_profile()
        before = dict(body)
        negate = ln.peek("no", *_PP_WORDS) == "no"
        if negate:
            ln.keyword("no")
        word = ln.keyword(*_PP_WORDS)
        out = ""
        if word == "description":
            if negate:
                ln.end()
                body["description"] = ""
            else:
                text = ln.rest()
                if len(text) > MAX_DESCRIPTION:
                    raise _Fail(f"% Description longer than {MAX_DESCRIPTION} characters\n")
                body["description"] = text
        elif word == "switchport":
            out = self._switchport(ln, body, negate)
        elif word == "state":
            ln.keyword("enabled")
            ln.end()
            body["enabled"] = not negate
        elif word == "shutdown":
            ln.end()
            body["shutdown"] = not negate
        else:
            self._channel_group(ln, body, negate)
        if body == before:
            return [], out
        return [Op("port_profile", self.profile, body)], out

    def _switchport(self, ln: _Line, body: dict[str, Any], negate: bool) -> str:
        what = ln.keyword("mode", "access", "trunk", "port-security")
        if what == "mode":
            if negate:
                ln.end()
                body["mode"] = "access"
                return ""
            body["mode"] = ln.keyword("access", "trunk")
            ln.end()
            return ""
        if what == "access":
            ln.keyword("vlan")
            if negate:
                ln.end()
                body["access_vlan"] = 1
                return ""
            ids = ln.vlan_list()
            ln.end()
            if len(ids) != 1:
                raise _Fail("% An access port carries exactly one VLAN\n")
            body["access_vlan"] = ids[0]
            out = ""
            if self.view.get("vlan", str(ids[0])) is None:
                out += (
                    f"Warning: VLAN {ids[0]} does not exist; ports of this profile will not "
                    "forward until it is created\n"
                )
            if body.get("mode", "access") != "access":
                out += (
                    "Warning: the profile is in trunk mode; "
                    "the access VLAN applies in access mode\n"
                )
            return out
        if what == "trunk":
            ln.keyword("allowed")
            ln.keyword("vlan")
            if negate:
                ln.end()
                body["allowed_vlans"] = []
                return ""
            return self._trunk_allowed(ln, body)
        ln.keyword("maximum")
        if negate:
            if not ln.at_end():
                ln.int_arg(1, MAX_PORT_SECURITY, "port-security maximum")
            ln.end()
            body["max_macs"] = 0
            return ""
        body["max_macs"] = ln.int_arg(1, MAX_PORT_SECURITY, "port-security maximum")
        ln.end()
        return ""

    def _trunk_allowed(self, ln: _Line, body: dict[str, Any]) -> str:
        current = [int(v) for v in body.get("allowed_vlans") or []]
        how = ln.peek("add", "remove", "all")
        if how == "all":
            ln.keyword("all")
            ln.end()
            body["allowed_vlans"] = []
            return ""
        if how is not None:
            ln.keyword(how)
        ids = ln.vlan_list()
        ln.end()
        out = ""
        if how == "add":
            if not current:
                raise _Fail(
                    "% All VLANs are allowed already; "
                    "use 'switchport trunk allowed vlan LIST' to restrict\n"
                )
            already = sorted(set(ids) & set(current))
            if already:
                out = f"Warning: VLAN(s) {format_vlan_list(already)} already allowed\n"
            new = sorted(set(current) | set(ids))
        elif how == "remove":
            if not current:
                raise _Fail(
                    "% All VLANs are allowed; set an explicit list before removing from it\n"
                )
            absent = sorted(set(ids) - set(current))
            if absent:
                out = f"Warning: VLAN(s) {format_vlan_list(absent)} were not allowed\n"
            new = sorted(set(current) - set(ids))
            if not new:
                raise _Fail(
                    "% Removing every allowed VLAN is not supported; "
                    "use 'shutdown' to stop the profile's ports\n"
                )
        else:
            new = ids
        body["allowed_vlans"] = new
        return out

    def _channel_group(self, ln: _Line, body: dict[str, Any], negate: bool) -> None:
        if body.get("type", "vethernet") != "ethernet":
            raise _Fail("% channel-group is valid only in an ethernet (uplink) port-profile\n")
        if negate:
            ln.end()
            body["channel_group"] = 0
            body["lacp_mode"] = ""
            return
        if ln.peek("auto") == "auto":
            ln.keyword("auto")
            number = int(body.get("channel_group") or 0) or self._free_channel_group()
        else:
            number = ln.int_arg(1, MAX_CHANNEL_GROUP, "channel-group")
            for key, other in self.view.list("port_profile").items():
                if key != self.profile and other.get("channel_group") == number:
                    raise _Fail(f"% channel-group {number} is used by port-profile {key}\n")
        lacp = ""
        if not ln.at_end():
            ln.keyword("mode")
            mode = ln.keyword("active", "passive", "on")
            lacp = "" if mode == "on" else mode
        ln.end()
        body["channel_group"] = number
        body["lacp_mode"] = lacp

    def _free_channel_group(self) -> int:
        used = {int(v.get("channel_group") or 0) for v in self.view.list("port_profile").values()}
        n = 1
        while n in used:
            n += 1
        if n > MAX_CHANNEL_GROUP:
            raise _Fail("% No free channel-group number\n")
        return n

    # --- vlan mode ---

    def _vlan_line(self, ln: _Line) -> tuple[list[Op], str]:
        negate = ln.peek("no", *_VLAN_WORDS) == "no"
        if negate:
            ln.keyword("no")
        ln.keyword(*_VLAN_WORDS)
        name = ""
        if negate:
            ln.end()
        else:
            name = ln.rest()
            if len(name) > MAX_VLAN_NAME:
                raise _Fail(f"% VLAN name longer than {MAX_VLAN_NAME} characters\n")
        ops: list[Op] = []
        for n in self.vlans:
            body = self.view.get("vlan", str(n))
            if body is None:
                raise _Fail(f"% VLAN {n} no longer exists\n")
            if is_openstack(body):
                raise _openstack_refusal(f"VLAN {n}")
            new = {**body, "name": name or default_vlan_name(n)}
            if new != body:
                ops.append(Op("vlan", str(n), new))
        return ops, ""
