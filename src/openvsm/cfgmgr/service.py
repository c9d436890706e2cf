"""cfgmgr: owns the node's store (PSS), replication to the standby, the CLI
server and the REST API (DESIGN §1, §4, §6).

Write path (the guarantee of DESIGN §4): a configuration change is committed
to the local store in one SQLite transaction, handed to the replication
sender, and acknowledged to its caller (CLI, REST, vemmgr) only when the
standby has applied it, or at once when no HA standby is attached. Only the
active accepts writes; the standby answers with the name of the active.

Role: cfgmgr follows hamgr's ``status`` topic. On an active it runs the
replication sender towards the peer's control address (TCP, same port as
the heartbeat UDP socket); on a standby it listens there and applies the
stream. A reset of that stream by the peer's kernel (its processes died)
triggers hamgr's crash fast path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import AsyncIterator
from typing import Any

from openvsm.config import NodeConfig
from openvsm.ipc import IpcClient, IpcError, IpcServer, IpcUnavailable, subscribe
from openvsm.store.pss import Change, Op, Store, StoreError
from openvsm.sysmgr.service import NodeFatal

log = logging.getLogger("cfgmgr")


class NotActive(IpcError):
    pass


class Cfgmgr:
    def __init__(self, cfg: NodeConfig) -> None:
        self.cfg = cfg
        self.store = Store(cfg.data_dir / "pss.db")
        self.ha: dict[str, Any] = {"state": "initializing", "epoch": 0}
        self.ipc = IpcServer(cfg.run_dir / "cfgmgr.sock", self._handle)
        self.hamgr = IpcClient(cfg.run_dir / "hamgr.sock", timeout=5.0)
        self.sysmgr = IpcClient(cfg.run_dir / "sysmgr.sock", timeout=5.0)
        self.vemmgr = IpcClient(cfg.run_dir / "vemmgr.sock", timeout=5.0)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._role_started: str | None = None
        self._role_changed = asyncio.Event()
        self._facts_dirty = asyncio.Event()
        self._commit_queue: list[tuple[list[Op], str, str, str, asyncio.Future[Change]]] = []
        self._flush_scheduled = False
        self.sync: Any = None
        self.rest: Any = None
        # Split-brain loser: no write may commit once hamgr collected the
        # discarded changes (they would vanish unlisted in the reload).
        self.fenced = False
        # The store's last seq when this process started serving as active:
        # later changes exist on no peer unless a standby acknowledged them.
        self.active_since_seq: int | None = None

    def wall(self) -> float:
        return time.time() + self.cfg.clock_offset_s

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ---- lifecycle ------------------------------------------------------
    async def run(self) -> None:
        from openvsm.cfgmgr.cli import build_cli

        self.cli = build_cli(self)
        await self.ipc.start()
        self.spawn(self._follow_hamgr())
        self.spawn(self._facts_pusher())
        if self.cfg.rest_listen is not None or self.cfg.rest_plain_listen is not None:
            from openvsm.cfgmgr.rest import start_rest

            self.rest = await start_rest(self)
        try:
            await asyncio.Event().wait()
        finally:
            for task in list(self._tasks):
                task.cancel()
            if self.sync is not None:
                with contextlib.suppress(Exception):
                    await self.sync.stop()
            if self.rest is not None:
                with contextlib.suppress(Exception):
                    await self.rest.cleanup()
            await self.ipc.stop()
            self.hamgr.close()
            self.sysmgr.close()
            self.vemmgr.close()
            self.store.close()

    async def _hamgr_events(self) -> AsyncIterator[dict[str, Any]]:
        delay = 0.02
        while True:
            try:
                async for event in subscribe(self.cfg.run_dir / "hamgr.sock", "status"):
                    delay = 0.02
                    if isinstance(event, dict):
                        yield event
            except IpcUnavailable:
                pass
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)

    async def _follow_hamgr(self) -> None:
        hamgr_instance = None
        async for status in self._hamgr_events():
            self.ha = status
            instance = status.get("instance", status.get("boot_id"))
            if instance != hamgr_instance:
                # A new hamgr process (stateful restart: same boot id, new
                # instance): tell it again what we told the old one.
                hamgr_instance = instance
                self._facts_dirty.set()
                if self.sync is not None:
                    self.sync.repush()
            state = status.get("state")
            if state in ("active", "standby") and self._role_started is None:
                self._role_started = str(state)
                await self._start_role(str(state))
            elif state == "active" and self._role_started == "standby":
                # Failover or switchover: the standby takes over with its store
                # as it stands (every acknowledged change is in it) and starts
                # streaming to whoever becomes its standby.
                log.warning("standby -> active: switching replication to sender")
                if self.sync is not None:
                    await self.sync.stop()
                self._role_started = "active"
                await self._start_role("active")
            elif state == "standby" and self._role_started == "active":
                # active -> standby never happens without a reload. A restarted hamgr
                # that found the peer active (it took over while hamgr restarted)
                # comes back as standby: this node's services still run as active,
                # so the node reloads into a fresh standby (full resync).
                log.error("hamgr reports standby while cfgmgr runs as active: reloading")
                self.fenced = True
                try:
                    await self.sysmgr.call(
                        "reload", reason="hamgr restarted as standby of a new active"
                    )
                except IpcError as exc:
                    log.error("cannot ask sysmgr to reload: %s", exc)
            if self.sync is not None and not self.fenced:
                # Fenced (handing over, or lost a split-brain): the standby going
                # away must not release writes waiting for its acknowledgement.
                self.sync.on_ha_status(status)
            self._role_changed.set()

    async def _start_role(self, state: str) -> None:
        from openvsm.cfgmgr.replication import Replication

        if state == "active":
            self.active_since_seq = self.store.last_seq
        self.sync = Replication(self, state)
        sender = getattr(self.sync, "sender", None)
        if sender is not None and self.ha.get("peer_present"):
            # A restarted cfgmgr on an active with a standby: that standby was
            # attached to the previous process, so writes keep waiting for its
            # acknowledgement (it reconnects and gets the tail) until hamgr
            # declares it absent. Otherwise they would be acknowledged on the
            # local commit alone and lost if this node fails before the standby
            # catches up.
            sender.core.attached = True
        await self.sync.start()
        self._facts_dirty.set()

    async def _facts_pusher(self) -> None:
        """Tell hamgr the split-brain inputs; coalesced, never on the write path."""
        while True:
            await self._facts_dirty.wait()
            self._facts_dirty.clear()
            try:
                await self.hamgr.call(
                    "set_facts",
                    last_config_time=float(self.store.get_fact("last_config_time") or 0.0),
                    change_seq=self.store.last_seq,
                )
            except IpcError:
                await asyncio.sleep(0.2)
                self._facts_dirty.set()

    # ---- writes ---------------------------------------------------------
    def is_active(self) -> bool:
        return self.ha.get("state") == "active"

    def active_name(self) -> str:
        if self.is_active():
            return f"sup-{self.cfg.sup_number} (this supervisor)"
        peer = self.cfg.control.peer
        where = f", control {peer}" if peer else ""
        return f"sup-{3 - self.cfg.sup_number} ({self.cfg.peer_role}{where})"

    def not_active_text(self) -> str:
        state = self.ha.get("state", "initializing")
        if state == "standby":
            return (
                "% This supervisor is the HA standby: configuration is accepted only on the "
                f"active supervisor, {self.active_name()}"
            )
        return f"% This supervisor is {state}: configuration is not accepted now"

    async def ensure_active(self) -> None:
        """Raise NotActive unless this node is the active; asks hamgr when the
        cached status says otherwise (the subscription may lag a transition)."""
        if self.is_active():
            return
        try:
            status = await self.hamgr.call("status", timeout=2.0)
        except IpcError:
            status = None
        if isinstance(status, dict) and status.get("state") == "active":
            self.ha = status
            return
        raise NotActive(self.not_active_text())

    async def commit(self, ops: list[Op], *, user: str, source: str, command: str) -> Change:
        await self.ensure_active()
        if self.fenced:
            raise NotActive(
                "% This supervisor is handing over or reloading (switchover, split-brain "
                "resolution lost): configuration is not accepted now"
            )
        change = await self._durable(ops, user=user, source=source, command=command)
        self.ipc.publish("changes", {"seq": change.seq, "ops": [_op_dict(o) for o in change.ops]})
        self._facts_dirty.set()
        if self.sync is not None:
            await self.sync.replicate(change)
        return change

    async def _durable(self, ops: list[Op], *, user: str, source: str, command: str) -> Change:
        """Commit through the group committer: writes that arrive while the
        previous group is being synced share one SQLite transaction and one
        fsync (synchronous=FULL stays); each write is still all-or-nothing and
        is acknowledged only after the group is durable."""
        fut: asyncio.Future[Change] = asyncio.get_running_loop().create_future()
        self._commit_queue.append((ops, user, source, command, fut))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_commits)
        return await fut

    def _flush_commits(self) -> None:
        self._flush_scheduled = False
        group, self._commit_queue = self._commit_queue, []
        if self.fenced:
            # Fenced while these writes waited for their turn: none is committed.
            for *_, fut in group:
                if not fut.done():
                    fut.set_exception(
                        NotActive(
                            "% This supervisor is handing over or reloading: "
                            "configuration is not accepted now"
                        )
                    )
            return
        done: list[tuple[asyncio.Future[Change], Change | None, Exception | None]] = []
        epoch = int(self.ha.get("epoch", 0))
        try:
            with self.store.batch():
                for ops, user, source, command, fut in group:
                    try:
                        change = self.store.commit(
                            ops,
                            user=user,
                            source=source,
                            command=command,
                            time=self.wall(),
                            epoch=epoch,
                        )
                        done.append((fut, change, None))
                    except (StoreError, sqlite3.Error) as exc:
                        done.append((fut, None, exc))
        except (StoreError, sqlite3.Error) as exc:
            # The group's COMMIT failed (disk full, file size limit, I/O error):
            # nothing in it is durable, nothing is acknowledged; the daemon goes on.
            with contextlib.suppress(sqlite3.Error):
                self.store._db.execute("ROLLBACK")
            done = [(fut, None, exc) for _, _, _, _, fut in group]
        for fut, result, error in done:
            if fut.done():
                continue
            if result is not None:
                fut.set_result(result)
                continue
            log.error("commit failed: %s", error)
            fut.set_exception(
                IpcError(f"% Configuration not saved: the store cannot be written ({error})")
            )

    def account(self, *, user: str, command: str, result: str) -> None:
        try:
            self.store.account(user=user, command=command, result=result, time=self.wall())
        except (StoreError, sqlite3.Error) as exc:
            # Accounting must not turn a clear error (disk full) into another one.
            with contextlib.suppress(sqlite3.Error):
                self.store._db.execute("ROLLBACK")
            log.error("accounting of %r not saved: %s", command, exc)

    def discarded_changes(self, t: float) -> list[Change]:
        """Split-brain loser: the changes the winner may not have. By time (the
        split's start) and, independent of wall-clock jumps, every change after
        the last one a standby acknowledged or after this process became active."""
        found = {c.seq: c for c in self.store.changes_after_time(t)}
        base = self.active_since_seq
        sender = getattr(self.sync, "sender", None)
        if sender is not None:
            base = max(base or 0, int(sender.core.acked_seq))
        if base is not None:
            with contextlib.suppress(StoreError):
                found.update((c.seq, c) for c in self.store.changes_since(base))
        return [found[seq] for seq in sorted(found)]

    def on_replicated(self, change: Change) -> None:
        """Standby: a change from the active was applied."""
        self.ipc.publish("changes", {"seq": change.seq, "ops": [_op_dict(o) for o in change.ops]})
        self._facts_dirty.set()

    # ---- IPC ------------------------------------------------------------
    async def _handle(self, op: str, args: dict[str, Any]) -> Any:
        if op == "subscribed":
            return {"seq": self.store.last_seq}
        if op == "cli":
            return await self.cli.execute(str(args.get("line", "")), str(args.get("session", "")))
        if op == "commit":
            raw_ops = args.get("ops")
            if not isinstance(raw_ops, list):
                raise IpcError("commit needs a list of ops")
            ops = [Op(kind=str(o["kind"]), key=str(o["key"]), body=o.get("body")) for o in raw_ops]
            change = await self.commit(
                ops,
                user=str(args.get("user", "admin")),
                source=str(args.get("source", "ipc")),
                command=str(args.get("command", "")),
            )
            return {"seq": change.seq}
        if op == "list":
            return self.store.list(str(args.get("kind")))
        if op == "get":
            return self.store.get(str(args.get("kind")), str(args.get("key")))
        if op == "snapshot_digest":
            return {"digest": self.store.digest(), "seq": self.store.last_seq}
        if op == "accounting":
            limit = int(args.get("limit", 1000))
            return [
                {
                    "time": e.time,
                    "user": e.user,
                    "command": e.command,
                    "result": e.result,
                    "seq": e.seq,
                }
                for e in self.store.accounting_log(limit)
            ]
        if op == "changes_since_time":
            t = float(args.get("time", 0.0))
            if args.get("fence"):
                self.fenced = True
            return [
                {
                    "time": c.time,
                    "user": c.user,
                    "command": c.command,
                    "result": "DISCARDED",
                    "seq": c.seq,
                }
                for c in self.discarded_changes(t)
            ]
        if op == "fence":
            # hamgr, before a switchover or reload: no acknowledgement from now
            # on of a change the standby may not have (pending ones stay pending).
            self.fenced = bool(args.get("fenced", True))
            return {"fenced": self.fenced, "seq": self.store.last_seq}
        if op == "sync_status":
            return self.sync.status() if self.sync is not None else {"state": "none"}
        raise IpcError(f"unknown op {op}")


def _op_dict(op: Op) -> dict[str, Any]:
    return {"kind": op.kind, "key": op.key, "body": op.body}


async def run_cfgmgr(cfg: NodeConfig) -> None:
    try:
        cm = Cfgmgr(cfg)
    except StoreError as exc:
        # Never re-initialise a store we cannot read (the configuration would be
        # lost) and never restart into the same error: the node stops.
        raise NodeFatal(
            f"the configuration store is unusable: {exc}; restore it from a backup or "
            "move it away to start with an empty configuration (the standby resyncs it)"
        ) from None
    await cm.run()
