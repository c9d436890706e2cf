"""The data every exec handler returns: one TypedDict per handler id.

This is the contract between the services that answer ``show`` commands
(hamgr, cfgmgr, vemmgr, sysmgr) and the renderers of ``openvsm.cli.render``.
Keys follow NX-OS's JSON output (``TABLE_x``/``ROW_x``, lower-case names) so
that ``COMMAND | json`` reads like NX-OS; the dict itself is what ``| json``
prints. Tables are ``{"TABLE_x": {"ROW_x": [row, ...]}}``; an empty table is
``{"ROW_x": []}``. Times are display strings (local wall clock,
``YYYY-Mon-DD HH:MM:SS``) unless a key says otherwise (``_s`` = seconds).

Handlers that only act (``reload``, ``clear ...``) return ``Message`` or a
plain string; an empty message prints nothing.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

from openvsm.vlans import format_vlan_list

# --- show system redundancy status -----------------------------------------


class Collision(TypedDict):
    mac: str
    latest_collision_time: str


class Overwrite(TypedDict):
    """A collision entry replaced after the eighth (``Overwritten: ...`` line)."""

    old_mac: str
    new_mac: str
    time: str


class RedundancyStatus(TypedDict):
    """``show_redundancy_status``. ``this_sup``/``other_sup`` are ``"(sup-1)"``
    (primary) or ``"(sup-2)"`` (secondary). ``rdn_mode_oper`` is ``"None"``
    without a peer. A ``*_state`` of None omits that line. ``overwrites`` may
    also hold ready-made ``"Overwritten: ..."`` strings. ``collisions`` are
    VSMs with this supervisor's role (seen here or relayed by the other);
    ``peer_collisions`` VSMs with the other's role heard here."""

    rdn_role_admin: str
    rdn_role_oper: str
    rdn_mode_admin: str
    rdn_mode_oper: str
    this_sup: str
    this_sup_rdn_state: str
    this_sup_sup_state: str
    this_sup_internal_state: str
    other_sup: str
    other_sup_rdn_state: str
    other_sup_sup_state: str | None
    other_sup_internal_state: str | None
    collisions: list[Collision]
    overwrites: NotRequired[list[Overwrite | str]]
    # Ours: VSMs of the *other* supervisor's role that this one heard (an
    # unknown MAC, or a duplicate boot of the other's MAC) and relayed to it.
    peer_collisions: NotRequired[list[Collision]]
    peer_overwrites: NotRequired[list[Overwrite | str]]
    epoch: int


# --- redundancy internals ----------------------------------------------------


class TraceRow(TypedDict):
    time: str  # display
    timestamp: NotRequired[str]  # ISO UTC (docs/observability.md)
    event: str


class TraceTable(TypedDict):
    ROW_trace: list[TraceRow]


class RedundancyTrace(TypedDict):
    """``show_redundancy_trace``: oldest first."""

    TABLE_trace: TraceTable


class RedundancyCounterRow(TypedDict):
    """One interface (``control``/``mgmt``). Extra integer keys are shown too."""

    interface: str
    hb_sent: int
    hb_recv: int
    hb_missed: int
    drop_bad_mac: int
    drop_bad_tag: int
    drop_bad_domain: int
    drop_malformed: int


class RedundancyCounterTable(TypedDict):
    ROW_interface: list[RedundancyCounterRow]


class RedundancyCounters(TypedDict):
    """``show_redundancy_counters``. ``{"TABLE_counters": {"ROW_counters": ...}}``
    (hamgr's op ``counters``) renders as well; every ``drop_<reason>`` key of
    ``openvsm.wire.codec.DropReason`` is shown."""

    TABLE_interface: RedundancyCounterTable


class AccountingRow(TypedDict):
    """One committed change of the accounting log."""

    seq: int
    time: str
    user: str
    source: NotRequired[str]  # cli | rest | sync
    command: str
    result: NotRequired[str]  # SUCCESS (default) | FAILURE | DISCARDED


class AccountingTable(TypedDict):
    ROW_acct: list[AccountingRow]


class AccountingLog(TypedDict):
    """``show_accounting_log``: oldest first."""

    TABLE_acct: AccountingTable


class ActiveActiveLogs(TypedDict):
    """``show_activeactive_(remote_)accounting_logs``: the log saved during the
    last split-brain resolution. ``saved_at`` is None when nothing is stored.
    ``TABLE_discarded`` (our addition): the loser's changes made during the
    split that were dropped. The handler's args carry ``which``: ``accounting``
    | ``remote accounting`` (hamgr op ``activeactive``'s names); hamgr's saved
    form ``{"saved", "from"|"winner", "entries": [row], "discarded": [row]}``
    renders as well."""

    saved_at: str | None
    peer: NotRequired[str]  # "(sup-1)" / "(sup-2)": whose log it is
    TABLE_acct: AccountingTable
    TABLE_discarded: NotRequired[AccountingTable]


class ActiveActiveTraces(TypedDict):
    """``show_activeactive_(remote_)redundancy_traces`` (``which``: ``traces`` |
    ``remote traces``). hamgr's saved form ``{"saved", "traces": ["<time>
    <event>", ...]}`` renders as well."""

    saved_at: str | None
    peer: NotRequired[str]
    TABLE_trace: TraceTable


class Message(TypedDict):
    """Action handlers (``reload``, ``clear ...``, ``copy ...``)."""

    message: str


# --- sysmgr --------------------------------------------------------------------


class ServiceRow(TypedDict):
    name: str
    pid: int | None
    state: str  # running | starting | backoff | stopped
    restarts: int
    uptime_s: float | None
    last_exit: str | None


class ServiceTable(TypedDict):
    ROW_service: list[ServiceRow]


class SysmgrServices(TypedDict):
    """``show_sysmgr_services``."""

    TABLE_service: ServiceTable


# --- modules --------------------------------------------------------------------


class ModInfoRow(TypedDict):
    modinf: int
    ports: int
    modtype: str  # "Virtual Supervisor Module" | "Virtual Ethernet Module"
    model: str
    status: str  # active * | ha-standby | ok | powered-up | headless | offline


class ModInfoTable(TypedDict):
    ROW_modinfo: list[ModInfoRow]


class ModSwRow(TypedDict):
    modwwn: int
    sw: str
    hw: str


class ModSwTable(TypedDict):
    ROW_modwwninfo: list[ModSwRow]


class ModSrvRow(TypedDict):
    modsrv: int
    srvip: str
    srvuuid: str
    srvname: str


class ModSrvTable(TypedDict):
    ROW_modsrvinfo: list[ModSrvRow]


class ModuleView(TypedDict):
    """``show_module``. The module of this session has status ``"active *"``."""

    TABLE_modinfo: ModInfoTable
    TABLE_modwwninfo: ModSwTable
    TABLE_modsrvinfo: ModSrvTable


class VemCounterRow(TypedDict):
    module: int
    hb_sent: int
    hb_recv: int
    hb_missed: int
    config_pushes: int
    last_attach: str | None


class VemCounterTable(TypedDict):
    ROW_vem_counters: list[VemCounterRow]


class VemCounters(TypedDict):
    """``show_module_vem_counters``."""

    TABLE_vem_counters: VemCounterTable


class SvsDomain(TypedDict):
    """``show_svs_domain``. ``control``/``mgmt``: this node's ``ip:port``;
    ``transport``: ``udp`` | ``l2``; ``state``: e.g. ``"Active, HA standby"``."""

    domain_id: int
    control: str
    mgmt: str
    transport: NotRequired[str]
    state: str


class NeighborRow(TypedDict):
    src_mac: str
    type: str  # VSM | VEM
    domain_id: int
    node_id: int | str  # VEM: its module number (text "0302" = module 3)
    last_learnt_s: float | None  # seconds ago
    addr: NotRequired[str]


class NeighborTable(TypedDict):
    ROW_neighbor: list[NeighborRow]


class SvsNeighbors(TypedDict):
    """``show_svs_neighbors``."""

    domain_id: int
    system_mac: str
    TABLE_neighbor: NeighborTable


class VethRow(TypedDict):
    interface: str  # Vethernet<N>
    module: int
    owner: str  # VM name
    port_profile: str
    status: str  # up | down


class VethTable(TypedDict):
    ROW_interface: list[VethRow]


class InterfaceVirtual(TypedDict):
    """``show_interface_virtual``."""

    TABLE_interface: VethTable


class MemberRow(TypedDict):
    port: str  # Ethernet3/1
    port_status: str  # P (up in port-channel) | D | I | H | s


class MemberTable(TypedDict):
    ROW_member: list[MemberRow]


class ChannelRow(TypedDict):
    group: int
    port_channel: str  # port-channel1
    layer: str  # S (switched)
    status: str  # U (up) | D (down)
    type: str  # Eth
    prtcl: str  # LACP | NONE
    module: NotRequired[int]
    TABLE_member: MemberTable


class ChannelTable(TypedDict):
    ROW_channel: list[ChannelRow]


class PortChannelSummary(TypedDict):
    """``show_port_channel_summary``."""

    TABLE_channel: ChannelTable


class LacpNeighborRow(TypedDict):
    port_channel: str
    port: str
    partner_system_id: str  # "32768,00-23-04-ee-be-01"
    partner_port_number: str  # "0x101"
    age_s: int
    flags: str  # S/F (slow/fast) + A/P (active/passive), e.g. "SA"
    partner_port_priority: int
    partner_oper_key: str  # "0x8000"
    partner_port_state: str  # "0x3d"


class LacpNeighborTable(TypedDict):
    ROW_lacp_neighbor: list[LacpNeighborRow]


class LacpNeighbor(TypedDict):
    """``show_lacp_neighbor``."""

    TABLE_lacp_neighbor: LacpNeighborTable


class LacpCounterRow(TypedDict):
    port_channel: str
    port: str
    lacpdus_sent: int
    lacpdus_recv: int
    markers_sent: int
    markers_recv: int
    pkts_err: int


class LacpCounterTable(TypedDict):
    ROW_lacp_counters: list[LacpCounterRow]


class LacpCounters(TypedDict):
    """``show_lacp_counters``."""

    TABLE_lacp_counters: LacpCounterTable


# --- configuration -------------------------------------------------------------


class PortProfileRow(TypedDict):
    profile_name: str
    type: str  # Vethernet | Ethernet
    description: str
    status: str  # enabled | disabled
    inherit: str
    owner: str  # cli | openstack
    config_attributes: list[str]  # "switchport mode access", ...
    assigned_interfaces: list[str]


class PortProfileTable(TypedDict):
    ROW_port_profile: list[PortProfileRow]


class PortProfiles(TypedDict):
    """``show_port_profile`` (args may carry ``name``). An unknown name is a
    ``CliCommandError("ERROR: port-profile NAME does not exist")``."""

    TABLE_port_profile: PortProfileTable


class RunningConfig(TypedDict):
    """``show_running_config``: configuration lines in NX-OS order."""

    time: str
    lines: list[str]


class OpenstackSync(TypedDict):
    """``show_openstack_sync``: the Neutron driver's sync as the VSM sees it."""

    last_notification: str | None  # start | end | no-change
    last_notification_time: str | None
    network_profile_md5: str
    subnet_md5: str
    network_md5: str
    port_md5: str
    consolidated_md5: str
    network_profiles: int
    networks: int
    subnets: int
    ports: int


class Version(TypedDict):
    """``show_version``."""

    sys_ver_str: str
    host_name: str
    chassis_id: str
    kern_uptm_days: int
    kern_uptm_hrs: int
    kern_uptm_mins: int
    kern_uptm_secs: int
    rr_reason: NotRequired[str]
    os_str: NotRequired[str]


class Hostname(TypedDict):
    """``show_hostname``."""

    hostname: str


def port_profile_row(body: dict[str, Any], assigned: list[str]) -> PortProfileRow:
    """The ``show port-profile`` row of a store ``port_profile`` body
    (docs/CONTRACTS.md), with its config attributes in NX-OS wording."""
    attrs: list[str] = []
    mode = str(body.get("mode") or "access")
    attrs.append(f"switchport mode {mode}")
    if mode == "access" and body.get("access_vlan"):
        attrs.append(f"switchport access vlan {body['access_vlan']}")
    if mode == "trunk" and body.get("allowed_vlans"):
        vlans = format_vlan_list(int(v) for v in body["allowed_vlans"])
        attrs.append(f"switchport trunk allowed vlan {vlans}")
    if body.get("bridge_domain"):
        attrs.append(f"switchport access bridge-domain {body['bridge_domain']}")
    if body.get("max_macs"):
        attrs.append(f"switchport port-security maximum {body['max_macs']}")
    if body.get("channel_group"):
        lacp = f" mode {body['lacp_mode']}" if body.get("lacp_mode") else ""
        attrs.append(f"channel-group {body['channel_group']}{lacp}")
    attrs.append("shutdown" if body.get("shutdown") else "no shutdown")
    return PortProfileRow(
        profile_name=str(body.get("name", "")),
        type="Ethernet" if body.get("type") == "ethernet" else "Vethernet",
        description=str(body.get("description") or ""),
        status="enabled" if body.get("enabled") else "disabled",
        inherit=str(body.get("inherit") or ""),
        owner=str(body.get("owner") or "cli"),
        config_attributes=attrs,
        assigned_interfaces=list(assigned),
    )
