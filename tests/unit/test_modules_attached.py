"""Attached means attached, on virtual time with the seed's timers.

Two VSM module tables (primary, secondary) and real VEM cores (heartbeat 1 s,
headless after 15 s) on a simulated network with a connectivity matrix; the
VSMs' loss time is the seed's 15 s. The active's commits replicate to the
standby while the VSMs are linked, and land in each node's own store, the
way cfgmgr keeps them. The split-brain module count is the table's
``attached_count`` (what ``ModuleCount`` reports to hamgr); the resolution
itself is ``splitbrain.decide`` on those counts.
"""

from __future__ import annotations

import heapq
import itertools
from typing import Any

import msgspec
import pytest

from openvsm.modules.table import (
    Attachment,
    AttachmentCheckpoint,
    Commit,
    ModuleCount,
    ModuleStatus,
    ModuleTable,
    StoreOp,
)
from openvsm.modules.table import Effect as TableEffect
from openvsm.modules.table import Send as TableSend
from openvsm.redundancy.splitbrain import Side, decide
from openvsm.vem.core import Send as VemSend
from openvsm.vem.core import VemCore, VemState
from openvsm.wire.codec import Frame
from openvsm.wire.messages import SenderRole

Addr = tuple[str, int]
HB, LOSS, HEADLESS = 1.0, 15.0, 15.0
MACS = {"primary": "02:00:00:00:00:01", "secondary": "02:00:00:00:00:02"}
ROLES = {"primary": SenderRole.PRIMARY, "secondary": SenderRole.SECONDARY}
VSM_ADDRS: dict[str, Addr] = {"primary": ("10.0.0.1", 17001), "secondary": ("10.0.0.2", 17001)}
LATENCY = 0.001


class ModuleNet:
    """Two module tables and N VEM cores on a virtual clock (zero-loss links
    unless blocked)."""

    def __init__(self, nvems: int) -> None:
        self.now = 0.0
        self.tables = {
            name: ModuleTable(
                module_limit=16,
                listen=f"{VSM_ADDRS[name][0]}:{VSM_ADDRS[name][1]}",
                heartbeat_interval=HB,
                loss_time=LOSS,
                wall=lambda: 1e9 + self.now,
            )
            for name in VSM_ADDRS
        }
        self.stores: dict[str, dict[str, dict[str, dict[str, Any]]]] = {
            name: {"module": {}, "veth": {}} for name in VSM_ADDRS
        }
        self.vems: dict[str, VemCore] = {}
        self.vem_addrs: dict[Addr, str] = {}
        self.vem_macs: dict[str, str] = {}
        for i in range(1, nvems + 1):
            host = f"h{i}"
            self.vems[host] = VemCore(
                host_uuid=f"uuid-{i}",
                host_name=host,
                host_ip=f"10.1.0.{i}",
                vsms=tuple(VSM_ADDRS.values()),
                heartbeat_interval=HB,
                headless_after=HEADLESS,
            )
            self.vem_addrs[(f"10.1.0.{i}", 18000)] = host
            self.vem_macs[host] = f"02:00:00:00:01:{i:02x}"
        self.blocked: set[tuple[str, str]] = set()  # (VEM host, VSM name)
        self.vsm_link = True  # replication between the VSMs
        self.counts: dict[str, list[tuple[float, int]]] = {n: [] for n in VSM_ADDRS}
        self._queue: list[tuple[float, int, str, Frame, Addr]] = []
        self._seq = itertools.count(1)

    # ---- wiring ---------------------------------------------------------------

    def vem_addr(self, host: str) -> Addr:
        return next(a for a, h in self.vem_addrs.items() if h == host)

    def _vsm_effects(self, name: str, effects: list[TableEffect]) -> None:
        table = self.tables[name]
        for e in effects:
            if isinstance(e, TableSend):
                host = self.vem_addrs.get(e.addr)
                if host is None or (host, name) in self.blocked:
                    continue
                frame = Frame(ROLES[name], MACS[name], table.epoch, next(self._seq), e.msg)
                self._push(host, frame, VSM_ADDRS[name])
            elif isinstance(e, Commit):
                self._commit(name, e.ops)
            elif isinstance(e, ModuleCount):
                self.counts[name].append((self.now, e.count))

    def _commit(self, name: str, ops: tuple[StoreOp, ...]) -> None:
        peer = "secondary" if name == "primary" else "primary"
        targets = [name] + ([peer] if self.vsm_link else [])
        for target in targets:
            store = self.stores[target]
            for op in ops:
                if op.body is None:
                    store[op.kind].pop(op.key, None)
                else:
                    store[op.kind][op.key] = dict(op.body)
        if self.vsm_link:
            self._vsm_effects(peer, self.tables[peer].apply_changes(list(ops), self.now))

    def _vem_effects(self, host: str, effects: list[Any]) -> None:
        for e in effects:
            if not isinstance(e, VemSend):
                continue
            name = next((n for n, a in VSM_ADDRS.items() if a == e.addr), None)
            if name is None or (host, name) in self.blocked:
                continue
            frame = Frame(SenderRole.VEM, self.vem_macs[host], 0, next(self._seq), e.msg)
            self._push(name, frame, self.vem_addr(host))

    def _push(self, dst: str, frame: Frame, src: Addr) -> None:
        heapq.heappush(self._queue, (self.now + LATENCY, next(self._seq), dst, frame, src))

    def _deliver(self, dst: str, frame: Frame, src: Addr) -> None:
        if dst in self.tables:
            host = self.vem_addrs[src]
            if (host, dst) not in self.blocked:
                self._vsm_effects(dst, self.tables[dst].on_frame(frame, src, self.now))
        elif (dst, self._vsm_of(src)) not in self.blocked:
            self._vem_effects(dst, self.vems[dst].on_frame(frame, src, self.now))

    @staticmethod
    def _vsm_of(addr: Addr) -> str:
        return next(n for n, a in VSM_ADDRS.items() if a == addr)

    # ---- driving ----------------------------------------------------------------

    def activate(self, name: str, epoch: int) -> None:
        self._vsm_effects(name, self.tables[name].became_active(epoch, self.now))

    def start_vems(self) -> None:
        for host, core in self.vems.items():
            self._vem_effects(host, core.start(self.now))

    def run_until(self, t: float) -> None:
        while True:
            deadlines = [tb.next_deadline() for tb in self.tables.values()]
            deadlines += [v.next_deadline() for v in self.vems.values()]
            timer = min(deadlines)
            frame_at = self._queue[0][0] if self._queue else float("inf")
            nxt = min(timer, frame_at)
            if nxt > t:
                self.now = t
                return
            self.now = max(self.now, nxt)
            if frame_at <= timer:
                _, _, dst, frame, src = heapq.heappop(self._queue)
                self._deliver(dst, frame, src)
                continue
            for name, table in self.tables.items():
                if table.next_deadline() <= self.now:
                    self._vsm_effects(name, table.tick(self.now))
            for host, core in self.vems.items():
                if core.next_deadline() <= self.now:
                    self._vem_effects(host, core.tick(self.now))

    def partition_vsms(self) -> None:
        self.vsm_link = False

    def block(self, hosts: list[str], vsm: str) -> None:
        self.blocked |= {(h, vsm) for h in hosts}

    def unblock(self, hosts: list[str], vsm: str) -> None:
        self.blocked -= {(h, vsm) for h in hosts}

    # ---- observing --------------------------------------------------------------

    def statuses(self, name: str) -> dict[str, str]:
        """``show module`` status per host name, from the live table."""
        table = self.tables[name]
        return {m.host_name: m.status.value for m in table.modules.values()}

    def count(self, name: str) -> int:
        return self.tables[name].attached_count()

    def reported(self, name: str) -> int | None:
        """The last ModuleCount this VSM reported (hamgr's split-brain input)."""
        return self.counts[name][-1][1] if self.counts[name] else None

    def store_view(self, name: str) -> dict[str, Any]:
        """What cfgmgr shows from this node's store (vemmgr restarting, or the
        standby): it must equal the active's live view."""
        view = ModuleTable(module_limit=16)
        view.load(self.stores[name]["module"], self.stores[name]["veth"])
        return view.modules_data()

    def neighbors(self, name: str) -> list[int]:
        rows = self.tables[name].neighbors_data(self.now)["TABLE_neighbor"]["ROW_neighbor"]
        return [r["node_id"] for r in rows]

    def attached_to(self, host: str) -> str | None:
        core = self.vems[host]
        if core.state is not VemState.ATTACHED:
            return None
        return next(n for n, m in MACS.items() if m == core.active_mac)


def pair_with_vems(nvems: int = 3) -> ModuleNet:
    """Primary active since t=0, secondary its standby, every VEM attached."""
    net = ModuleNet(nvems)
    net.activate("primary", epoch=1)
    net.start_vems()
    net.run_until(5.0)
    assert all(net.attached_to(h) == "primary" for h in net.vems)
    assert net.count("primary") == nvems and net.reported("primary") == nvems
    return net


def hosts_with(statuses: dict[str, str], status: str) -> set[str]:
    return {h for h, s in statuses.items() if s == status}


def test_the_standby_mirrors_the_actives_view() -> None:
    net = pair_with_vems()
    # The replicated objects: the standby shows what the active shows ...
    assert net.statuses("secondary") == {"h1": "ok", "h2": "ok", "h3": "ok"}
    assert net.tables["secondary"].modules_data() == net.tables["primary"].modules_data()
    # ... but it serves nobody and reports no count (it is not attached to anyone).
    assert net.reported("secondary") is None
    assert net.neighbors("secondary") == []


@pytest.mark.parametrize("heal_after", [1.0, 14.0])
def test_takeover_isolated_from_every_vem_counts_nothing(heal_after: float) -> None:
    """The issue's split: the secondary loses the primary and every VEM, takes
    over, gets a configuration change, and the pair heals 1 s / 14 s later.
    With inherited modules counted (the bug) it would have 3 like the primary
    and win on its later configuration time."""
    net = pair_with_vems()
    net.partition_vsms()
    net.block(list(net.vems), "secondary")
    takeover = 20.0
    net.run_until(takeover)
    net.activate("secondary", epoch=2)

    # Every inherited module is powered-up at once, counted 0, reported 0.
    assert net.statuses("secondary") == {"h1": "powered-up", "h2": "powered-up", "h3": "powered-up"}
    assert net.count("secondary") == 0 and net.reported("secondary") == 0
    assert net.neighbors("secondary") == []
    # Committed: the new active's store (its next standby, cfgmgr's fallback) says so too.
    assert net.store_view("secondary") == net.tables["secondary"].modules_data()
    assert net.count("primary") == 3

    net.run_until(takeover + heal_after - 0.01)
    assert net.count("secondary") == 0 and net.reported("secondary") == 0
    assert net.count("primary") == 3 and net.reported("primary") == 3
    # The resolution at the heal: the secondary configured last, yet the module
    # count decides first, and the primary has every VEM.
    loser, why = decide(
        primary=Side(net.reported("primary") or 0, last_config_time=100.0, last_active_time=0.0),
        secondary=Side(net.reported("secondary") or 0, 120.0, takeover),
    )
    assert loser == "secondary", why
    assert why == "module count primary 3, secondary 0"

    # Healed (VEM links back): the VEMs ignore the new active's heartbeats (no
    # switch request reached them); its inherited modules drop to offline at
    # the usual loss time after the takeover, never to ok.
    net.unblock(list(net.vems), "secondary")
    net.run_until(takeover + LOSS - 0.01)
    assert hosts_with(net.statuses("secondary"), "powered-up") == {"h1", "h2", "h3"}
    assert net.count("secondary") == 0
    net.run_until(takeover + LOSS + 0.01)
    assert net.statuses("secondary") == {"h1": "offline", "h2": "offline", "h3": "offline"}
    assert net.count("secondary") == 0
    assert all(net.attached_to(h) == "primary" for h in net.vems)
    assert all(v.counters["switches"] == 0 for v in net.vems.values())
    assert net.count("primary") == 3
    assert [c for _, c in net.counts["secondary"]] == [0]  # never reported anything else
    assert net.store_view("secondary") == net.tables["secondary"].modules_data()


def test_partial_switch_counts_only_the_vems_that_came() -> None:
    """Both VSMs active; the switch request reaches h1 and h2, not h3 (cut off
    the secondary): 2 on the new active, 1 on the old, at every moment after."""
    net = pair_with_vems()
    net.partition_vsms()
    net.block(["h3"], "secondary")
    takeover = 20.0
    net.run_until(takeover)
    net.activate("secondary", epoch=2)
    assert net.count("secondary") == 0 and net.reported("secondary") == 0
    net.run_until(takeover + 0.5)
    assert net.statuses("secondary") == {"h1": "ok", "h2": "ok", "h3": "powered-up"}
    assert net.count("secondary") == 2 and net.reported("secondary") == 2
    assert sorted(net.neighbors("secondary")) == [
        net.tables["secondary"].modules[f"uuid-{i}"].number for i in (1, 2)
    ]
    # The VEMs that switched detached from the primary.
    assert net.statuses("primary") == {"h1": "offline", "h2": "offline", "h3": "ok"}
    assert net.count("primary") == 1 and net.reported("primary") == 1
    # Heal the VEM link at 1 s: h3 stays with its original active.
    net.unblock(["h3"], "secondary")
    net.run_until(takeover + 14.0)
    assert net.statuses("secondary")["h3"] == "powered-up"
    assert (net.count("secondary"), net.count("primary")) == (2, 1)
    loser, _ = decide(Side(1, 200.0, 0.0), Side(2, 100.0, takeover))
    assert loser == "primary"
    net.run_until(takeover + LOSS + 0.01)
    assert net.statuses("secondary") == {"h1": "ok", "h2": "ok", "h3": "offline"}
    assert (net.count("secondary"), net.count("primary")) == (2, 1)
    assert net.attached_to("h3") == "primary"
    assert [c for _, c in net.counts["secondary"]] == [0, 1, 2]
    assert net.store_view("secondary") == net.tables["secondary"].modules_data()
    assert net.store_view("primary") == net.tables["primary"].modules_data()


@pytest.mark.parametrize("heal_after", [1.0, 14.0])
def test_vems_that_lost_the_primary_come_when_they_can_reach_the_new_active(
    heal_after: float,
) -> None:
    """The mirror case: the primary loses the secondary and every VEM at P; the
    secondary takes over at P + 15 s but reaches the VEMs only from the heal on.
    The VEMs went headless (~15 s) and attach to it within a heartbeat of the
    heal -- before the 15 s after the takeover run out, even at 14 s."""
    net = pair_with_vems()
    split = 10.5
    net.run_until(split)
    net.partition_vsms()
    net.block(list(net.vems), "primary")
    net.block(list(net.vems), "secondary")
    takeover = split + LOSS
    net.run_until(takeover)
    net.activate("secondary", epoch=2)
    assert net.statuses("primary") == {"h1": "offline", "h2": "offline", "h3": "offline"}
    assert net.count("primary") == 0 and net.reported("primary") == 0
    assert all(v.state is VemState.HEADLESS for v in net.vems.values())
    net.run_until(takeover + heal_after - 0.01)
    assert hosts_with(net.statuses("secondary"), "powered-up") == {"h1", "h2", "h3"}
    assert net.count("secondary") == 0

    net.unblock(list(net.vems), "secondary")
    net.run_until(takeover + heal_after + HB + 0.01)
    assert net.statuses("secondary") == {"h1": "ok", "h2": "ok", "h3": "ok"}
    assert net.count("secondary") == 3 and net.reported("secondary") == 3
    assert all(net.attached_to(h) == "secondary" for h in net.vems)
    loser, _ = decide(Side(0, 200.0, 0.0), Side(3, 100.0, takeover))
    assert loser == "primary"
    net.run_until(takeover + LOSS + 5.0)
    assert (net.count("secondary"), net.count("primary")) == (3, 0)


def test_offline_in_the_store_stays_offline_at_takeover() -> None:
    net = pair_with_vems()
    net.block(["h3"], "primary")
    net.run_until(5.0 + LOSS + 1.0)
    assert net.statuses("primary")["h3"] == "offline"
    assert net.statuses("secondary")["h3"] == "offline"  # replicated
    net.partition_vsms()
    net.activate("secondary", epoch=2)
    assert net.statuses("secondary") == {"h1": "powered-up", "h2": "powered-up", "h3": "offline"}


def test_a_restarted_table_resumes_its_checkpoint_and_keeps_the_takeover_clock() -> None:
    """vemmgr's restart on the same active: a table loaded from the store plus
    the checkpoint shows the same rows, counts the same, commits nothing, and
    a powered-up module still drops to offline 15 s after the takeover."""
    net = pair_with_vems()
    net.partition_vsms()
    net.block(["h3"], "secondary")
    takeover = 20.0
    net.run_until(takeover)
    net.activate("secondary", epoch=2)
    net.run_until(takeover + 5.0)
    live = net.tables["secondary"]
    assert net.statuses("secondary") == {"h1": "ok", "h2": "ok", "h3": "powered-up"}
    saved = msgspec.json.decode(msgspec.json.encode(live.attachments()), type=AttachmentCheckpoint)
    assert saved.epoch == 2

    fresh = ModuleTable(module_limit=16, listen=live.listen, heartbeat_interval=HB, loss_time=LOSS)
    fresh.load(net.stores["secondary"]["module"], net.stores["secondary"]["veth"])
    assert fresh.restore_attachments(saved) == 3
    effects = fresh.became_active(2, net.now)
    assert not [e for e in effects if isinstance(e, Commit)]
    assert ModuleCount(2) in effects
    assert fresh.modules_data() == live.modules_data()
    assert sorted(
        r["node_id"] for r in fresh.neighbors_data(net.now)["TABLE_neighbor"]["ROW_neighbor"]
    ) == sorted(net.neighbors("secondary"))
    net.tables["secondary"] = fresh
    net.run_until(takeover + LOSS - 0.01)
    assert net.statuses("secondary") == {"h1": "ok", "h2": "ok", "h3": "powered-up"}
    net.run_until(takeover + LOSS + 0.01)
    assert net.statuses("secondary") == {"h1": "ok", "h2": "ok", "h3": "offline"}
    assert net.count("secondary") == 2

    # Without the checkpoint the same store means a new takeover: powered-up.
    again = ModuleTable(module_limit=16, listen=live.listen, heartbeat_interval=HB, loss_time=LOSS)
    again.load(net.stores["secondary"]["module"], net.stores["secondary"]["veth"])
    again.became_active(3, net.now)
    assert {m.status for m in again.modules.values()} == {
        ModuleStatus.POWERED_UP,
        ModuleStatus.OFFLINE,
    }


def test_a_new_epoch_of_the_same_active_keeps_what_it_observed() -> None:
    """hamgr restarts on the active: vemmgr sees initializing, then active with
    a higher epoch. Same VSM, VEMs still attached to it: no powered-up, and
    the (lagging) store copy never overwrites what it observed."""
    net = pair_with_vems()
    primary = net.tables["primary"]
    before = primary.modules_data()
    primary.became_standby(keep_attachments=True)
    primary.load(net.stores["primary"]["module"], net.stores["primary"]["veth"])
    stale = dict(net.stores["primary"]["module"]["uuid-1"], status="offline")
    primary.apply_changes([StoreOp("module", "uuid-1", stale)], net.now)
    effects = primary.became_active(2, net.now)
    assert not [e for e in effects if isinstance(e, Commit)]
    assert primary.modules_data() == before
    assert net.count("primary") == 3
    net.run_until(net.now + 30.0)
    assert net.count("primary") == 3 and all(net.attached_to(h) == "primary" for h in net.vems)
    # A real standby spell (not a hamgr restart) forgets them: a later
    # takeover starts from the store again.
    primary.became_standby()
    net.activate("primary", epoch=3)
    assert hosts_with(net.statuses("primary"), "powered-up") == {"h1", "h2", "h3"}


def test_bad_checkpoint_entries_are_skipped() -> None:
    table = ModuleTable(module_limit=16)
    table.load({"u1": {"module": 3, "status": "ok"}, "u2": {"module": 4, "status": "ok"}}, {})
    saved = AttachmentCheckpoint(
        epoch=1,
        modules={"u1": Attachment(status="bogus"), "gone": Attachment(status="ok")},
    )
    assert table.restore_attachments(saved) == 0
    table.became_active(1, 0.0)
    assert {m.status for m in table.modules.values()} == {ModuleStatus.POWERED_UP}
