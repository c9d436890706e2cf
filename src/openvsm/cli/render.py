"""Text renderers: handler data (``openvsm.cli.views``) -> NX-OS screen text.

``render(handler, data)`` returns the text an operator sees after the
command line, every line ending in ``\\n`` (empty data may render as ``""``).
Layouts of ``show system redundancy status`` and ``show module`` are pinned
byte for byte by ``specs/cli-output.md`` and golden files; the others follow
NX-OS's look. Renderers only read data; they never fetch anything.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from openvsm.timefmt import display_time

Renderer = Callable[[Mapping[str, Any]], str]

_RENDERERS: dict[str, Renderer] = {}


def renderer(*handlers: str) -> Callable[[Renderer], Renderer]:
    def bind(fn: Renderer) -> Renderer:
        for handler in handlers:
            _RENDERERS[handler] = fn
        return fn

    return bind


def has_renderer(handler: str) -> bool:
    return handler in _RENDERERS


def render(handler: str, data: Mapping[str, Any]) -> str:
    """The screen text of ``handler``'s data. Unknown handlers: a message
    (``{"message": ...}``) or a generic ``key: value`` listing."""
    fn = _RENDERERS.get(handler)
    if fn is not None:
        return fn(data)
    if set(data) <= {"message"}:
        return _message(data)
    return "".join(f"{key}: {_text(value)}\n" for key, value in data.items())


def _rows(data: Mapping[str, Any], table: str, row: str) -> list[Mapping[str, Any]]:
    """``data[TABLE_x][ROW_x]`` as a list (NX-OS sends a lone row as a dict)."""
    rows = (data.get(table) or {}).get(row) or []
    if isinstance(rows, Mapping):
        return [rows]
    return list(rows)


def _text(value: Any) -> str:
    return "-" if value is None or value == "" else str(value)


def _table(
    headers: Sequence[str], widths: Sequence[int], rows: Sequence[Sequence[Any]], gap: int = 2
) -> list[str]:
    """Left-aligned columns with a dashed rule; the last column is not padded."""
    sep = " " * gap

    def line(cells: Sequence[Any]) -> str:
        parts = [
            str(c).ljust(w) if i < len(cells) - 1 else str(c)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return sep.join(parts).rstrip()

    out = [line(headers), line(["-" * w for w in widths])]
    out.extend(line(r) for r in rows)
    return out


def _lines(lines: Sequence[str]) -> str:
    return "".join(f"{ln}\n" for ln in lines)


@renderer(
    "reload",
    "system_switchover",
    "restart_service",
    "clear_peer_mac",
    "copy_running_startup",
    "checkpoint",
    "no_checkpoint",
    "rollback",
    "checkpoint_file",
    "rollback_file",
    "delete_file",
    "clear_activeactive_accounting_logs",
    "clear_activeactive_redundancy_traces",
    "clear_activeactive_remote_accounting_logs",
    "clear_activeactive_remote_redundancy_traces",
)
def _message(data: Mapping[str, Any]) -> str:
    text = str(data.get("message") or "")
    return text if not text or text.endswith("\n") else text + "\n"


# --- show system redundancy status ------------------------------------------


def _sup_name(sup: str) -> str:
    """``"(sup-2)"`` -> ``"sup-2"``."""
    return sup.strip().strip("()")


@renderer("show_redundancy_status")
def render_redundancy_status(d: Mapping[str, Any]) -> str:
    mode_oper = d.get("rdn_mode_oper")
    out = [
        "",
        "Redundancy role",
        "-----",
        f"      administrative:  {d['rdn_role_admin']}",
        f"      operational:    {d['rdn_role_oper']}",
        "",
        "Redundancy mode",
        "-----",
        f"      administrative:  {d['rdn_mode_admin']}",
        f"      operational:    {'None' if mode_oper is None else mode_oper}",
    ]
    for heading, prefix in (("This supervisor", "this_sup"), ("Other supervisor", "other_sup")):
        out += ["", f"{heading} {d[prefix]}", "-----"]
        for label, key in (
            ("Redundancy state:  ", "rdn_state"),
            ("Supervisor state:  ", "sup_state"),
            ("Internal state:   ", "internal_state"),
        ):
            value = d.get(f"{prefix}_{key}")
            if value is not None:
                out.append(f"      {label}{value}")
    if d.get("mgmt_address"):
        out += [
            "",
            "Shared management address",
            "-----",
            f"      address:  {d['mgmt_address']}",
            f"      holder:   {d.get('mgmt_address_holder')}",
        ]
    this_sup, other_sup = _sup_name(d["this_sup"]), _sup_name(d["other_sup"])
    collisions = list(d.get("collisions") or [])
    heard = list(d.get("peer_collisions") or [])
    if collisions:
        out += _collision_block(this_sup, collisions, d.get("overwrites") or [])
    if heard:
        # Ours: the other supervisor's role, heard here and reported to it.
        out += _collision_block(other_sup, heard, d.get("peer_overwrites") or [])
        out.append(f"      (heard by this supervisor, reported to {other_sup})")
    if collisions or heard:
        out += [
            "",
            f"NOTE: Please run the same command on {other_sup} to check for "
            f"conflicting(if any) {other_sup}(s) in the same domain.",
        ]
    return _lines(out)


def _collision_block(sup: str, collisions: list[Any], overwrites: list[Any]) -> list[str]:
    """The seed's WARNING block for conflicting ``sup``s (specs/cli-output.md)."""
    out = [
        "",
        f"WARNING! Conflicting {sup}(s) detected in same domain",
        "-----",
        "      MAC                Latest Collision Time",
    ]
    out += [f"{c['mac']}      {c['latest_collision_time']}" for c in collisions]
    for ow in overwrites:
        if isinstance(ow, str):
            out.append(ow if ow.startswith("Overwritten:") else f"Overwritten: {ow}")
        else:
            out.append(f"Overwritten: {ow['old_mac']} by {ow['new_mac']} at {ow['time']}")
    return out


# --- redundancy internals ------------------------------------------------------


def _trace_rows(d: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Trace rows; also hamgr's saved form ``{"traces": ["<time> <event>", ...]}``."""
    rows = [(str(r["time"]), str(r["event"])) for r in _rows(d, "TABLE_trace", "ROW_trace")]
    for item in d.get("traces") or []:
        if isinstance(item, Mapping):
            rows.append((str(item.get("time", "")), str(item.get("event", ""))))
        else:
            # "2012-Sep-11 18:59:17 event text": the time is the first two words
            parts = str(item).split(" ", 2)
            rows.append((" ".join(parts[:2]), parts[2]) if len(parts) == 3 else ("", str(item)))
    return rows


def _trace_lines(d: Mapping[str, Any]) -> list[str]:
    rows = _trace_rows(d)
    width = max([len("Time"), *(len(t) for t, _ in rows)])
    return _table(("Time", "Event"), (width, 5), rows)


@renderer("show_redundancy_trace")
def render_redundancy_trace(d: Mapping[str, Any]) -> str:
    return _lines(_trace_lines(d))


_COUNTER_LABELS = (
    ("hb_sent", "Heartbeats sent"),
    ("hb_recv", "Heartbeats received"),
    ("hb_missed", "Heartbeats missed"),
    ("drop_bad_mac", "Dropped, bad MAC"),
    ("drop_bad_tag", "Dropped, bad tag"),
    ("drop_bad_domain", "Dropped, bad domain"),
    ("drop_malformed", "Dropped, malformed"),
)


def _counter_label(key: str) -> str:
    if key.startswith("drop_"):
        return "Dropped, " + key[5:].replace("_", " ")
    return key.replace("_", " ").capitalize()


@renderer("show_redundancy_counters")
def render_redundancy_counters(d: Mapping[str, Any]) -> str:
    out: list[str] = []
    known = {k for k, _ in _COUNTER_LABELS} | {"interface"}
    rows = _rows(d, "TABLE_interface", "ROW_interface") or _rows(
        d, "TABLE_counters", "ROW_counters"
    )
    labelled = []
    for row in rows:
        labels = [(k, lbl) for k, lbl in _COUNTER_LABELS if k in row]
        labels += [(k, _counter_label(k)) for k in row if k not in known]
        labelled.append((row, labels))
    # one value column for all interfaces, so that they compare at a glance
    width = max([len("Heartbeats received"), *(len(lbl) for _, ls in labelled for _, lbl in ls)])
    for row, labels in labelled:
        if out:
            out.append("")
        out.append(f"Interface {row.get('interface', '?')}")
        out += [f"  {(lbl + ':').ljust(width + 1)}  {_text(row[k])}" for k, lbl in labels]
    return _lines(out)


def _acct_line(r: Mapping[str, Any]) -> str:
    result = r.get("result") or "SUCCESS"
    source = f":source={r['source']}" if r.get("source") else ""
    return (
        f"{r.get('time', '')}:seq={r.get('seq', '-')}{source}:user={r.get('user', '')}"
        f":cmd={r.get('command', '')} ({result})"
    )


@renderer("show_accounting_log")
def render_accounting_log(d: Mapping[str, Any]) -> str:
    return _lines([_acct_line(r) for r in _rows(d, "TABLE_acct", "ROW_acct")])


def _saved_header(d: Mapping[str, Any], what: str) -> list[str] | None:
    saved = d.get("saved_at", d.get("saved"))
    if saved is None:
        return None
    peer = d.get("peer") or d.get("from")
    whose = f" of {_sup_name(str(peer))}" if peer else ""
    return [f"{what}{whose} saved at {saved} (last split-brain resolution)", ""]


def _acct_rows(d: Mapping[str, Any], table: str, raw: str) -> list[Mapping[str, Any]]:
    """``TABLE_x.ROW_acct`` rows, or hamgr's saved list under ``raw``."""
    return _rows(d, table, "ROW_acct") or list(d.get(raw) or [])


@renderer("show_activeactive_accounting_logs", "show_activeactive_remote_accounting_logs")
def render_activeactive_logs(d: Mapping[str, Any]) -> str:
    head = _saved_header(d, "Accounting log")
    if head is None:
        return "No accounting logs saved during a split-brain resolution.\n"
    out = head + [_acct_line(r) for r in _acct_rows(d, "TABLE_acct", "entries")]
    discarded = _acct_rows(d, "TABLE_discarded", "discarded")
    if discarded:
        out += ["", "Discarded changes (made during the split, not kept):"]
        out += [_acct_line(r) for r in discarded]
    return _lines(out)


@renderer("show_activeactive_redundancy_traces", "show_activeactive_remote_redundancy_traces")
def render_activeactive_traces(d: Mapping[str, Any]) -> str:
    head = _saved_header(d, "Redundancy traces")
    if head is None:
        return "No redundancy traces saved during a split-brain resolution.\n"
    return _lines(head + _trace_lines(d))


# --- sysmgr ----------------------------------------------------------------------


def _uptime(seconds: Any) -> str:
    if seconds is None:
        return "-"
    total = int(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02}h"
    return f"{hours:02}:{minutes:02}:{secs:02}"


@renderer("show_sysmgr_services")
def render_sysmgr_services(d: Mapping[str, Any]) -> str:
    rows = [
        (
            r["name"],
            _text(r.get("pid")),
            r.get("state", "-"),
            r.get("restarts", 0),
            _uptime(r.get("uptime_s")),
            _text(r.get("last_exit")),
        )
        for r in _rows(d, "TABLE_service", "ROW_service")
    ]
    return _lines(
        _table(
            ("Service", "PID", "State", "Restarts", "Uptime", "Last exit"),
            (10, 8, 10, 8, 10, 9),
            rows,
        )
    )


# --- modules -------------------------------------------------------------------------


@renderer("show_module")
def render_module(d: Mapping[str, Any]) -> str:
    out = _table(
        ("Mod", "Ports", "Module-Type", "Model", "Status"),
        (3, 5, 32, 18, 12),
        [
            (r["modinf"], r["ports"], r["modtype"], r["model"], r["status"])
            for r in _rows(d, "TABLE_modinfo", "ROW_modinfo")
        ],
    )
    out.append("")
    out += _table(
        ("Mod", "Sw", "Hw"),
        (3, 18, 48),
        [(r["modwwn"], r["sw"], r["hw"]) for r in _rows(d, "TABLE_modwwninfo", "ROW_modwwninfo")],
    )
    out.append("")
    out += _table(
        ("Mod", "Server-IP", "Server-UUID", "Server-Name"),
        (3, 15, 36, 20),
        [
            (r["modsrv"], r["srvip"], r["srvuuid"], r["srvname"])
            for r in _rows(d, "TABLE_modsrvinfo", "ROW_modsrvinfo")
        ],
    )
    out += ["", "* this terminal session"]
    return _lines(out)


@renderer("show_module_vem_counters")
def render_vem_counters(d: Mapping[str, Any]) -> str:
    rows = [
        (
            r["module"],
            r.get("hb_sent", 0),
            r.get("hb_recv", 0),
            r.get("hb_missed", 0),
            r.get("config_pushes", 0),
            _text(r.get("last_attach")),
        )
        for r in _rows(d, "TABLE_vem_counters", "ROW_vem_counters")
    ]
    out = _table(
        ("Mod", "HB-Sent", "HB-Recv", "HB-Missed", "Config-Push", "Last-Attach"),
        (3, 10, 10, 10, 11, 20),
        rows,
    )
    drops = d.get("drops")
    if isinstance(drops, Mapping) and drops:
        out += ["", "Frames dropped: " + ", ".join(f"{k} {drops[k]}" for k in sorted(drops))]
    return _lines(out)


@renderer("show_svs_domain")
def render_svs_domain(d: Mapping[str, Any]) -> str:
    out = [
        "SVS domain config:",
        f"  Domain id:             {d['domain_id']}",
        f"  Control interface:     {d['control']}",
        f"  Management interface:  {d['mgmt']}",
    ]
    if d.get("transport"):
        out.append(f"  Transport:             {d['transport']}")
    out.append(f"  Status:                {d['state']}")
    return _lines(out)


def _node_id(value: object) -> str:
    """NX-OS node id: module N of slot 2 is ``0N02`` (module 3: ``0302``)."""
    return f"{value:02d}02" if isinstance(value, int) else _text(value)


@renderer("show_svs_neighbors")
def render_svs_neighbors(d: Mapping[str, Any]) -> str:
    out = [
        "",
        f"Active Domain ID: {d['domain_id']}",
        "",
        f"System MAC: {d.get('system_mac', '-')}",
        "",
    ]
    rows = [
        (
            r["src_mac"],
            r["type"],
            _text(r.get("domain_id", d["domain_id"])),
            _node_id(r.get("node_id")),
            "-" if r.get("last_learnt_s") is None else f"{float(r['last_learnt_s']):.2f}",
        )
        for r in _rows(d, "TABLE_neighbor", "ROW_neighbor")
    ]
    out += _table(
        ("Src MAC", "Type", "Domain-id", "Node-id", "Last learnt (Sec. ago)"),
        (17, 4, 9, 7, 22),
        rows,
    )
    return _lines(out)


def _short_if(name: str) -> str:
    for long, short in (("Vethernet", "Veth"), ("Ethernet", "Eth"), ("port-channel", "Po")):
        if name.startswith(long):
            return short + name[len(long) :]
    return name


@renderer("show_interface_virtual")
def render_interface_virtual(d: Mapping[str, Any]) -> str:
    rule = "-" * 79
    out = [rule, f"{'Port':<12}{'Owner':<25}{'Mod':<5}{'Port-Profile':<25}Status", rule]
    for r in _rows(d, "TABLE_interface", "ROW_interface"):
        out.append(
            f"{_short_if(r['interface']):<12}{_text(r.get('owner')):<25}"
            f"{r['module']!s:<5}{_text(r.get('port_profile')):<25}{r['status']}"
        )
    return _lines(out)


@renderer("show_port_channel_summary")
def render_port_channel_summary(d: Mapping[str, Any]) -> str:
    rule = "-" * 80
    out = [
        "Flags:  D - Down        P - Up in port-channel (members)",
        "        I - Individual  H - Hot-standby (LACP only)",
        "        s - Suspended   r - Module-removed",
        "        S - Switched    R - Routed",
        "        U - Up (port-channel)",
        rule,
        "Mod  Group Port-       Type     Protocol  Member Ports",
        "           Channel",
        rule,
    ]
    for r in _rows(d, "TABLE_channel", "ROW_channel"):
        name = f"{_short_if(r['port_channel'])}({r.get('layer', 'S')}{r.get('status', 'D')})"
        members = " ".join(
            f"{_short_if(m['port'])}({m['port_status']})"
            for m in _rows(r, "TABLE_member", "ROW_member")
        )
        mod = _text(r.get("module", ""))
        line = (
            f"{mod:<5}{r['group']!s:<6}{name:<12}{r.get('type', 'Eth'):<9}"
            f"{r.get('prtcl', 'NONE'):<10}"
        )
        out.append((line + members).rstrip())
    return _lines(out)


@renderer("show_lacp_neighbor")
def render_lacp_neighbor(d: Mapping[str, Any]) -> str:
    out = [
        "Flags:  S - Device is sending Slow LACPDUs F - Device is sending Fast LACPDUs",
        "        A - Device is in Active mode       P - Device is in Passive mode",
    ]
    current = None
    for r in _rows(d, "TABLE_lacp_neighbor", "ROW_lacp_neighbor"):
        key = (r.get("module"), r["port_channel"])
        if key != current:
            current = key
            where = f" (module {r['module']})" if r.get("module") is not None else ""
            out += [f"{r['port_channel']} neighbors{where}", "Partner's information"]
        out += [
            f"{'':12}{'Partner':<23}{'Partner':<16}{'':12}Partner",
            f"{'Port':<12}{'System ID':<23}{'Port Number':<16}{'Age':<12}Flags",
            f"{_short_if(r['port']):<11} {r['partner_system_id']:<22} "
            f"{r['partner_port_number']!s:<15} {r['age_s']!s:<11} {r['flags']}",
            "",
            f"{'':12}{'LACP Partner':<23}{'Partner':<28}Partner",
            f"{'':12}{'Port Priority':<23}{'Oper Key':<28}Port State",
            f"{'':12}{r['partner_port_priority']!s:<22} {r['partner_oper_key']!s:<27} "
            f"{r['partner_port_state']}",
            "",
        ]
    return _lines(out)


@renderer("show_lacp_counters")
def render_lacp_counters(d: Mapping[str, Any]) -> str:
    rule = "-" * 78
    out = [
        rule,
        f"{'':18}{'LACPDUs':<20}{'Markers/Resp LACPDUs':<22}",
        f"{'Port':<18}{'Sent':<10}{'Recv':<10}{'Sent':<11}{'Recv':<11}Pkts Err",
        rule,
    ]
    current = None
    for r in _rows(d, "TABLE_lacp_counters", "ROW_lacp_counters"):
        key = (r.get("module"), r["port_channel"])
        if key != current:
            current = key
            where = f" (module {r['module']})" if r.get("module") is not None else ""
            out.append(f"{r['port_channel']}{where}")
        out.append(
            f"{_short_if(r['port']):<18}{r['lacpdus_sent']!s:<10}{r['lacpdus_recv']!s:<10}"
            f"{r['markers_sent']!s:<11}{r['markers_recv']!s:<11}{r['pkts_err']}"
        )
    out[1] = out[1].rstrip()
    return _lines(out)


# --- configuration ---------------------------------------------------------------------


@renderer("show_port_profile")
def render_port_profile(d: Mapping[str, Any]) -> str:
    out: list[str] = []
    for r in _rows(d, "TABLE_port_profile", "ROW_port_profile"):
        if out:
            out.append("")
        out += [
            f"port-profile {r['profile_name']}",
            f" type: {r.get('type', 'Vethernet')}",
            f" description: {r.get('description', '')}".rstrip(),
            f" status: {r.get('status', 'disabled')}",
            f" owner: {r.get('owner', 'cli')}",
            f" inherit: {r.get('inherit', '')}".rstrip(),
            " config attributes:",
        ]
        out += [f"  {a}" for a in r.get("config_attributes") or []]
        out.append(" assigned interfaces:")
        out += [f"  {i}" for i in r.get("assigned_interfaces") or []]
    return _lines(out)


@renderer("show_running_config")
def render_running_config(d: Mapping[str, Any]) -> str:
    out = ["", "!Command: show running-config", f"!Time: {d.get('time', '')}".rstrip(), ""]
    out += list(d.get("lines") or [])
    return _lines(out)


@renderer("show_openstack_sync")
def render_openstack_sync(d: Mapping[str, Any]) -> str:
    """Data of ``openvsm.api.n1kv.openstack_sync_status`` plus object counts."""

    def when(t: Any) -> str:
        if not isinstance(t, int | float) or not t:
            return "-"
        return display_time(float(t))

    hashes = d.get("md5_hashes") or {}
    out = [
        "OpenStack sync:",
        f"  In sync:              {'yes' if d.get('in_sync') else 'no'} ({_text(d.get('reason'))})",
        f"  Last notification:    {_text(d.get('last_status') or None)}"
        f" at {when(d.get('last_time'))}",
        f"  Last md5 request:     {when(d.get('last_md5_request_time'))}",
        f"  Network profiles:     {d.get('network_profiles', 0)}",
        f"  Networks:             {d.get('networks', 0)}",
        f"  Subnets:              {d.get('subnets', 0)}",
        f"  Ports:                {d.get('ports', 0)}",
        "MD5 hashes:",
    ]
    for key in ("network_profile_md5", "subnet_md5", "network_md5", "port_md5", "consolidated_md5"):
        out.append(f"  {(key + ':').ljust(21)} {_text(hashes.get(key, d.get(key)))}")
    notes = d.get("notifications") or []
    if notes:
        out.append("Recent notifications:")
        for n in notes[-10:]:
            out.append(f"  {when(n.get('time'))}  {_text(n.get('status'))}")
    return _lines(out)


@renderer("show_version")
def render_version(d: Mapping[str, Any]) -> str:
    """NX-OS's layout (parsers key on ``system:    version``, ``Device name:``,
    ``Kernel uptime is``, ``Reason:``); the product is openvsm, not Cisco's."""
    out = [
        "openvsm Virtual Supervisor Module Software",
        "openvsm is open-source software; it is not Cisco NX-OS.",
        "",
        "Software",
        f"  system:    version {d['sys_ver_str']}",
        f"  system image file is:    {d.get('isan_file_name', '')}".rstrip(),
        f"  system compile time:     {d.get('isan_cmpl_time', '')}".rstrip(),
    ]
    if d.get("os_str"):
        out.append(f"  host OS:   {d['os_str']}")
    out += [
        "",
        "Hardware",
        f"  {d.get('chassis_id', 'openvsm Virtual Supervisor Module')}",
        f"  {d.get('cpu_name', 'CPU')} with {d.get('memory', 0)} {d.get('mem_type', 'kB')}"
        " of memory.",
        f"  Processor Board ID {d.get('proc_board_id', '')}".rstrip(),
        "",
        f"  Device name: {d['host_name']}",
        f"  bootflash:    {d.get('bootflash_size', 0)} kB",
        "",
        f"Kernel uptime is {d.get('kern_uptm_days', 0)} day(s), {d.get('kern_uptm_hrs', 0)}"
        f" hour(s), {d.get('kern_uptm_mins', 0)} minute(s), {d.get('kern_uptm_secs', 0)}"
        " second(s)",
        "",
        "Last reset",
        f"  Reason: {d.get('rr_reason') or 'Unknown'}",
        f"  System version: {d.get('rr_sys_ver', '')}".rstrip(),
        f"  Service: {d.get('rr_service', '')}".rstrip(),
    ]
    return _lines(out)


@renderer("show_hostname")
def render_hostname(d: Mapping[str, Any]) -> str:
    return f"{d['hostname']}\n"


@renderer("show_clock")
def render_clock(d: Mapping[str, Any]) -> str:
    return f"{d['simple_time']}\nTime source is {d.get('time_source', 'the host system clock')}\n"


@renderer("show_users")
def render_users(d: Mapping[str, Any]) -> str:
    out = [f"{'NAME':<9}{'LINE':<13}{'TIME':<17}{'IDLE':<10}{'PID':>6} COMMENT"]
    for r in _rows(d, "TABLE_sessions", "ROW_sessions"):
        comment = f"({r['host']})" if r.get("host") else ""
        if r.get("cur_session") == "true":
            comment = f"{comment} *".strip()
        out.append(
            f"{r['u_name']:<9}{r['tty']:<13}{r['login_time']:<17}{r['idle']:<10}"
            f"{r['pid']!s:>6} {comment}".rstrip()
        )
    return _lines(out)


@renderer("show_user_account")
def render_user_account(d: Mapping[str, Any]) -> str:
    out: list[str] = []
    for r in _rows(d, "TABLE_template", "ROW_template"):
        out += [
            f"user:{r['usr_name']}",
            "        this user account has no expiry date",
            f"        roles:{r['usr_roles']}",
            "",
        ]
    return _lines(out)


@renderer("show_inventory")
def render_inventory(d: Mapping[str, Any]) -> str:
    out: list[str] = []
    for r in _rows(d, "TABLE_inv", "ROW_inv"):
        out += [
            f"NAME: {r['name']},  DESCR: {r['desc']}",
            f"PID: {r['productid']:<18},  VID: {r['vendorid']:<4},  SN: {r['serialnum']}",
            "",
        ]
    return _lines(out)


def _mgmt_rows(d: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [r for r in _rows(d, "TABLE_interface", "ROW_interface") if r["interface"] == "mgmt0"]


def _veth_rows(d: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [r for r in _rows(d, "TABLE_interface", "ROW_interface") if r["interface"] != "mgmt0"]


@renderer("show_interface_brief")
def render_interface_brief(d: Mapping[str, Any]) -> str:
    rule = "-" * 80
    out = [rule, f"{'Port':<7}{'VRF':<13}{'Status':<7}{'IP Address':<40}{'Speed':<9}MTU", rule]
    for r in _mgmt_rows(d):
        out.append(
            f"{'mgmt0':<7}{'--':<13}{r['state']:<7}{r['ip_addr']:<40}{r['speed']!s:<9}{r['mtu']}"
        )
    out += [
        "",
        rule,
        f"{'Vethernet':<14}{'VLAN':<8}{'Type':<5}{'Mode':<7}{'Status':<8}{'Reason':<27}Speed",
        rule,
    ]
    for r in _veth_rows(d):
        out.append(
            f"{_short_if(r['interface']):<14}{r['vlan']!s:<8}{r['type']:<5}{r['portmode']:<7}"
            f"{r['state']:<8}{r['state_rsn_desc']:<27}{r['speed']}"
        )
    return _lines(out)


@renderer("show_interface_status")
def render_interface_status(d: Mapping[str, Any]) -> str:
    rule = "-" * 80
    out = [
        rule,
        f"{'Port':<14}{'Name':<19}{'Status':<10}{'Vlan':<10}{'Duplex':<8}{'Speed':<8}Type",
        rule,
    ]
    for r in _rows(d, "TABLE_interface", "ROW_interface"):
        out.append(
            f"{_short_if(r['interface']):<14}{_text(r.get('name'))[:18]:<19}{r['state']:<10}"
            f"{r['vlan']!s:<10}{r['duplex']:<8}{r['speed']!s:<8}{r['type']}"
        )
    return _lines(out)


@renderer("show_interface_mgmt0")
def render_interface_mgmt0(d: Mapping[str, Any]) -> str:
    out: list[str] = []
    for r in _rows(d, "TABLE_interface", "ROW_interface"):
        ip = f"{r['eth_ip_addr']}/{r['eth_ip_mask']}" if r.get("eth_ip_addr") else "unassigned"
        out += [
            f"mgmt0 is {r['state']}",
            f"admin state is {r['admin_state']},",
            f"  Hardware: {r['eth_hw_desc']}, address: {r['eth_hw_addr']}"
            f" (bia {r['eth_bia_addr']})",
            f"  Internet Address is {ip}",
            f"  MTU {r['eth_mtu']} bytes, BW {r['eth_bw']} Kbit, DLY 10 usec",
            f"  {r['eth_inpkts']} input packets  {r['eth_inbytes']} bytes",
            f"  {r['eth_outpkts']} output packets  {r['eth_outbytes']} bytes",
        ]
    return _lines(out)


@renderer("show_interface")
def render_interface(d: Mapping[str, Any]) -> str:
    """Every interface, NX-OS sections (``X is up`` / ``admin state is up,``),
    as NAPALM's nxos_ssh get_interfaces splits them."""
    out: list[str] = []
    for r in _rows(d, "TABLE_interface", "ROW_interface"):
        if r["interface"] == "mgmt0":
            out += render_interface_mgmt0({"TABLE_interface": {"ROW_interface": [r]}}).splitlines()
            out.append("")
            continue
        out += [
            f"{r['interface']} is {r['state']}",
            f"admin state is {r['admin_state']},",
            f"  Port description is {_text(r.get('desc'))}",
            f"  Hardware: {r['eth_hw_desc']}, address: {r['eth_hw_addr']}"
            f" (bia {r['eth_bia_addr']})",
            f'  Owner is VM "{_text(r.get("desc"))}"',
            f"  Active on module {r.get('module', 0)}",
            f"  Port-Profile is {_text(r.get('port_profile'))}",
            f"  Port mode is {r.get('portmode', 'access')}",
            f"  MTU {r['eth_mtu']} bytes, BW {r['eth_bw']} Kbit, DLY 10 usec",
            "",
        ]
    return _lines(out)


@renderer("show_hosts")
def render_hosts(d: Mapping[str, Any]) -> str:
    out = [f"DNS lookup {'enabled' if d.get('dns_enabled') else 'disabled'}"]
    if d.get("domain"):
        out.append(f"Default domain for vrf:default is {d['domain']}")
    out.append("Name servers are not configured")
    return _lines(out)


@renderer("show_file")
def render_file(d: Mapping[str, Any]) -> str:
    return _lines(list(d.get("lines") or []))


@renderer("show_vlan_brief")
def render_vlan_brief(d: Mapping[str, Any]) -> str:
    out = [
        f"{'VLAN':<5}{'Name':<33}{'Status':<10}Ports",
        f"{'-' * 4} {'-' * 32} {'-' * 9} {'-' * 31}",
    ]
    for r in _rows(d, "TABLE_vlanbriefxbrief", "ROW_vlanbriefxbrief"):
        ports = [_short_if(p) for p in str(r.get("vlanshowplist-ifidx") or "").split(",") if p]
        chunks = [", ".join(ports[i : i + 4]) for i in range(0, len(ports), 4)] or [""]
        out.append(
            f"{r['vlanshowbr-vlanid']!s:<5}{r['vlanshowbr-vlanname']:<33}"
            f"{r['vlanshowbr-vlanstate']:<10}{chunks[0]}".rstrip()
        )
        out += [f"{'':<48}{c}" for c in chunks[1:]]
    return _lines(out)


@renderer("show_startup_config")
def render_startup_config(d: Mapping[str, Any]) -> str:
    out = [
        "",
        "!Command: show startup-config",
        f"!Time: {d.get('time', '')}".rstrip(),
        f"!Startup config saved at: {d.get('saved', '')}".rstrip(),
        "",
    ]
    out += list(d.get("lines") or [])
    return _lines(out)


@renderer("show_checkpoint_summary")
def render_checkpoint_summary(d: Mapping[str, Any]) -> str:
    out = ["User Checkpoint Summary", "-" * 80]
    for i, r in enumerate(_rows(d, "TABLE_ckpt", "ROW_ckpt"), 1):
        out += [
            f"{i}) {r['name']}:",
            f"Created by {r['created_by']}",
            f"Created at {r['created_at']}",
            f"Size is {r['size']:,} bytes",
            f"Description: {r.get('description') or 'None'}",
            "",
        ]
    return _lines(out)
