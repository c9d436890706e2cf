"""cfgmgr: owns the node's store (PSS), replication to the standby, the CLI
server and the REST API (DESIGN §1, §4, §6).

Write path (the guarantee of DESIGN §4), pipelined: a configuration change
is validated and given its seq on the event loop (``Store.prepare``), sent
to the standby at once (``SyncSender.send``) and handed to the store's
writer thread (``openvsm.store.writer``), which commits everything queued
in one SQLite transaction (one fsync per group) while the standby applies
the same changes. The write-ack gate (``openvsm.cfgmgr.ackgate``, driven by
``openvsm.cfgmgr.acks``) alone decides when its caller (CLI, REST, vemmgr)
gets the acknowledgement: durable here and, with an HA standby, acked by
it; alone only on hamgr's word; never while fenced. Only the active
accepts writes; the standby answers with the name of the active.

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

from aiohttp import web

from openvsm.cfgmgr.ackgate import AckGate
from openvsm.cfgmgr.acks import WriteAcks
from openvsm.cfgmgr.cli import build_cli
from openvsm.cfgmgr.replication import Replication
from openvsm.cfgmgr.rest import start_rest
from openvsm.cli.server import CliServer
from openvsm.config import NodeConfig
from openvsm.contracts import cfgmgr as cfg_api
from openvsm.contracts import hamgr as hamgr_api
from openvsm.contracts.hamgr import HaStatus
from openvsm.ipc import (
    PEER_KEY,
    IpcClient,
    IpcError,
    IpcServer,
    IpcUnavailable,
    decode_args,
    subscribe_typed,
)
from openvsm.node import NodeFatal
from openvsm.observe.metrics import NodeMetrics
from openvsm.store.pss import BodyRefused, Change, Op, Store, StoreError
from openvsm.store.writer import StoreWriter
from openvsm.wire.messages import AccountingEntry

log = logging.getLogger("cfgmgr")

# hamgr hears the split-brain inputs at most this often (s): once per commit
# group would cost hamgr and cfgmgr an IPC round trip per group.
FACTS_SPACING_S = 0.01

# How long a write hamgr allows waits for this process to serve as active (s).
ACTIVE_READY_S = 10.0

# Floor of the ack timeout (the max heartbeat loss interval when larger): a
# loaded machine must not cost the standby its sync, a partition must not
# hold writes forever.
ACK_TIMEOUT_MIN_S = 3.0


class NotActive(IpcError):
    pass


class Cfgmgr:
    def __init__(self, cfg: NodeConfig) -> None:
        self.cfg = cfg
        self.store = Store(cfg.data_dir / "pss.db")
        self.ha = HaStatus()
        self.ipc = IpcServer(cfg.rundir.cfgmgr, self._handle, peer_credentials=True)
        self.hamgr = IpcClient(cfg.rundir.hamgr, timeout=5.0)
        self.sysmgr = IpcClient(cfg.rundir.sysmgr, timeout=5.0)
        self.vemmgr = IpcClient(cfg.rundir.vemmgr, timeout=5.0)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._failed: asyncio.Future[None] | None = None  # set by run: a task failed
        self._role_started: str | None = None
        self._role_changed = asyncio.Event()
        # Set once this process serves as active (its sender is in place): a
        # write hamgr already allows during a takeover waits for it, behind
        # the standby's last replicated changes in the writer thread.
        self._active_ready = asyncio.Event()
        self._facts_dirty = asyncio.Event()
        self.acks = WriteAcks(
            AckGate(ack_timeout=max(ACK_TIMEOUT_MIN_S, cfg.timers.max_loss_interval)),
            self._hamgr_says_active,
        )
        self.writer: StoreWriter | None = None
        self.sync: Replication | None = None
        self.rest: web.AppRunner | None = None
        self.cli: CliServer | None = None
        # Split-brain loser: no write may commit once hamgr collected the
        # discarded changes (they would vanish unlisted in the reload).
        self.fenced = False
        # The store's last seq when this process started serving as active:
        # later changes exist on no peer unless a standby acknowledged them.
        self.active_since_seq: int | None = None
        self.metrics = NodeMetrics(cfg.domain_id, cfg.role)  # /metrics (openvsm.observe)
        self._cli_users: dict[str, str] | None = None  # [cli] users, see cli/peers.py

    def wall(self) -> float:
        return time.time() + self.cfg.clock_offset_s

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        """A background task of this service. One that ends with an exception
        ends the service with it (``run`` raises; sysmgr restarts cfgmgr, a
        stateful restart) instead of leaving cfgmgr running without it."""
        task: asyncio.Task[Any] = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled() or task.exception() is None:
            return
        log.error("cfgmgr task %s failed: %r", task.get_name(), task.exception())
        if self._failed is not None and not self._failed.done():
            self._failed.set_exception(task.exception())  # type: ignore[arg-type]

    # ---- lifecycle ------------------------------------------------------
    async def run(self) -> None:
        self.cli = build_cli(self)
        self.writer = StoreWriter(
            self.store.path,
            self._written,
            loop=asyncio.get_running_loop(),
            max_changes=self.store.max_changes,
        )
        self._failed = asyncio.get_running_loop().create_future()
        await self.ipc.start()
        self.spawn(self._follow_hamgr())
        self.spawn(self._facts_pusher())
        self._start_notify()
        if self.cfg.rest_listen is not None or self.cfg.rest_plain_listen is not None:
            self.rest = await start_rest(self)
        try:
            await self._failed  # raises the exception of a failed task
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
            self.acks.stop()
            if self.writer is not None:
                self.writer.close()
            self.hamgr.close()
            self.sysmgr.close()
            self.vemmgr.close()
            self.store.close()

    async def _hamgr_events(self) -> AsyncIterator[HaStatus]:
        delay = 0.02
        while True:
            try:
                async for event in subscribe_typed(self.cfg.rundir.hamgr, "status", HaStatus):
                    delay = 0.02
                    yield event
            except IpcUnavailable:
                pass
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)

    def _start_notify(self) -> None:
        """Notify hooks (openvsm.observe.notify): own subscription, own worker."""
        from openvsm.observe.notify import NotifyRunner, NotifyState, programs_for

        obs = self.cfg.observe
        if not any(programs_for(obs, s) for s in NotifyState):
            return
        self.notify = NotifyRunner(
            obs,
            domain=self.cfg.domain_id,
            node=self.cfg.name,
            run_dir=self.cfg.run_dir,
            count=lambda state, result: self.metrics.notify_runs.labels(
                state.value, result.value
            ).inc(),
        )
        self.spawn(self.notify.follow(self._hamgr_events()))
        self.spawn(self.notify.work())

    async def _follow_hamgr(self) -> None:
        hamgr_instance = None
        async for status in self._hamgr_events():
            self.ha = status
            instance = status.instance
            if instance != hamgr_instance:
                # A new hamgr process (stateful restart: same boot id, new
                # instance): tell it again what we told the old one.
                hamgr_instance = instance
                self._facts_dirty.set()
                if self.sync is not None:
                    self.sync.repush()
            state = status.state
            if state in ("active", "standby") and self._role_started is None:
                self._role_started = state
                await self._start_role(state)
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
                self.set_fenced(True)
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
        if state == "active":
            self.active_since_seq = self.store.last_seq
        self.sync = Replication(self, state)
        sender = getattr(self.sync, "sender", None)
        if sender is not None and self.ha.peer_present:
            # A restarted cfgmgr on an active with a standby: that standby was
            # attached to the previous process, so writes keep waiting for its
            # acknowledgement (it reconnects and gets the tail) until hamgr
            # declares it absent. Otherwise they would be acknowledged on the
            # local commit alone and lost if this node fails before the standby
            # catches up.
            self.sync.start_attached()
        await self.sync.start()
        self._facts_dirty.set()
        if state == "active":
            self._active_ready.set()

    async def _facts_pusher(self) -> None:
        """Tell hamgr the split-brain inputs; coalesced, never on the write path."""
        while True:
            await self._facts_dirty.wait()
            self._facts_dirty.clear()
            try:
                await self.hamgr.ask(
                    hamgr_api.SetFacts(
                        last_config_time=float(self.store.get_fact("last_config_time") or 0.0),
                        change_seq=self.store.last_seq,
                    )
                )
            except IpcError:
                await asyncio.sleep(0.2)
                self._facts_dirty.set()
            else:
                await asyncio.sleep(FACTS_SPACING_S)

    # ---- writes ---------------------------------------------------------
    def set_fenced(self, on: bool) -> None:
        """Fenced (handing over, split-brain loser): no new write is accepted and
        none is acknowledged without the standby's ack (the gate)."""
        self.fenced = on
        self.acks.fence(on)

    async def _hamgr_says_active(self) -> bool:
        """The gate's question: hamgr, asked now, says this node is the active."""
        status = await self.hamgr.ask(hamgr_api.Status(), timeout=1.0)
        return status.state == "active"

    def is_active(self) -> bool:
        return self.ha.state == "active"

    def active_name(self) -> str:
        if self.is_active():
            return f"sup-{self.cfg.sup_number} (this supervisor)"
        peer = self.cfg.control.peer
        where = f", control {peer}" if peer else ""
        return f"sup-{3 - self.cfg.sup_number} ({self.cfg.peer_role}{where})"

    def not_active_text(self) -> str:
        state = self.ha.state
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
            status: HaStatus | None = await self.hamgr.ask(hamgr_api.Status(), timeout=2.0)
        except IpcError:
            status = None
        if status is not None and status.state == "active":
            self.ha = status
            return
        raise NotActive(self.not_active_text())

    async def commit(self, ops: list[Op], *, user: str, source: str, command: str) -> Change:
        await self.ensure_active()
        if not self._active_ready.is_set():
            try:
                async with asyncio.timeout(ACTIVE_READY_S):
                    await self._active_ready.wait()
            except TimeoutError:
                raise NotActive(
                    "% This supervisor is becoming active: configuration is not accepted yet"
                ) from None
        if self.fenced:
            raise NotActive(
                "% This supervisor is handing over or reloading (switchover, split-brain "
                "resolution lost): configuration is not accepted now"
            )
        started = time.monotonic()
        try:
            change = self.store.prepare(
                ops,
                user=user,
                source=source,
                command=command,
                time=self.wall(),
                epoch=self.ha.epoch,
            )
        except BodyRefused as exc:
            self.metrics.commit_failed()
            raise IpcError(f"% Configuration not saved: {exc}") from None
        except StoreError as exc:
            self.metrics.commit_failed()
            raise IpcError(
                f"% Configuration not saved: the store cannot be written ({exc})"
            ) from None
        acked = self.acks.submit(change.seq)
        sender = getattr(self.sync, "sender", None)
        if sender is not None:
            sender.send(change)  # pipelined: the standby applies it while we fsync
        if self.writer is None:
            raise IpcError("% Configuration not saved: cfgmgr is not running")
        self.writer.enqueue(change)
        try:
            await acked
        except Exception:
            self.metrics.commit_failed()
            raise
        self.metrics.committed(time.monotonic() - started)
        return change

    def _written(self, first: int, last: int, generation: int, error: BaseException | None) -> None:
        """The writer thread committed (or failed) changes ``first..last``."""
        receiver = getattr(self.sync, "receiver", None)
        if receiver is not None:
            receiver.written(first, last, generation, error)  # standby: replicated changes
            return
        writer = self.writer
        if writer is None or generation != writer.generation:
            return  # changes of an abandoned generation: already failed
        if error is None:
            changes = self.store.changes_since(first - 1, limit=last - first + 1)
            self.store.durable(last)
            self.acks.durable(last)
            self.publish_changes(changes)
            self._facts_dirty.set()
            return
        # The group's COMMIT failed (disk full, file size limit, I/O error): it
        # and every later change in flight are not durable and not acknowledged;
        # their seqs are assigned again. A standby that may have received them
        # is given up on (reset, then a snapshot of this store). The daemon goes on.
        log.error("commit of changes %d-%d failed: %s", first, last, error)
        sender = getattr(self.sync, "sender", None)
        sent = sender is not None and sender.sending
        self.store.abandon(first)
        writer.restart()
        self.acks.commit_failed(first, error, sent=sent)
        if sent and sender is not None:
            sender.kick()

    def account(self, *, user: str, command: str, result: str) -> None:
        try:
            self.store.account(user=user, command=command, result=result, time=self.wall())
        except (StoreError, sqlite3.Error) as exc:
            # Accounting must not turn a clear error (disk full) into another one.
            with contextlib.suppress(sqlite3.Error):
                self.store.rollback()
            log.error("accounting of %r not saved: %s", command, exc)

    def discarded_changes(self, t: float) -> list[Change]:
        """Split-brain loser: the changes the winner may not have. By time (the
        split's start) and, independent of wall-clock jumps, every change after
        the last one a standby acknowledged or after this process became active."""
        found = {c.seq: c for c in self.store.changes_after_time(t)}
        base = self.active_since_seq
        if getattr(self.sync, "sender", None) is not None:
            base = max(base or 0, self.acks.gate.acked_seq)
        if base is not None:
            with contextlib.suppress(StoreError):
                found.update((c.seq, c) for c in self.store.changes_since(base))
        return [found[seq] for seq in sorted(found)]

    def on_replicated(self, changes: list[Change]) -> None:
        """Standby: a group of changes from the active was applied."""
        self.publish_changes(changes)
        self._facts_dirty.set()

    def publish_changes(self, changes: list[Change]) -> None:
        """One ``changes`` event per commit group (one frame, one socket write per
        subscriber): ``first``..``seq`` the group's seqs, ``ops`` every op of
        them in commit order (applying them in order is applying each change)."""
        if not changes or not self.ipc.subscriber_count("changes"):
            return
        self.ipc.publish(
            "changes",
            {
                "first": changes[0].seq,
                "seq": changes[-1].seq,
                "ops": [_op_dict(o) for c in changes for o in c.ops],
            },
        )

    # ---- IPC ------------------------------------------------------------
    def _cli_server(self) -> CliServer:
        if self.cli is None:  # built before the IPC socket opens: not seen in practice
            raise IpcError("% cfgmgr is starting, try again")
        return self.cli

    async def _cli_request(self, args: dict[str, Any]) -> Any:
        """The local CLI: the user is the socket peer's, mapped (cli/peers.py)."""
        from openvsm.cli.peers import cli_user, user_map

        peer = args.get(PEER_KEY)
        uid = peer.get("uid") if isinstance(peer, dict) else None
        pid = peer.get("pid") if isinstance(peer, dict) else None
        if self._cli_users is None:
            self._cli_users = user_map(self.cfg.raw)  # parsed (and complained about) once
        user = cli_user(uid if isinstance(uid, int) else None, self._cli_users)
        return await self._cli_server().handle_ipc(
            args, user=user, pid=pid if isinstance(pid, int) else None
        )

    async def _ssh_cli_request(self, args: dict[str, Any]) -> Any:
        """The mgmt service's SSH sessions: the user is the one SSH authenticated.

        Only a peer running as root or as this node's own Unix user may name the
        user (such a process can read the store anyway); any other peer is
        refused."""
        import os

        peer = args.get(PEER_KEY)
        uid = peer.get("uid") if isinstance(peer, dict) else None
        if uid not in (0, os.getuid()):
            raise IpcError("% ssh_cli is reserved to the node's own mgmt service")
        user, origin = args.get("user"), args.get("origin")
        if not isinstance(user, str) or not user:
            raise IpcError("ssh_cli needs the authenticated user")
        line, session_id, action = args.get("line"), args.get("session"), args.get("action")
        return await self._cli_server().execute(
            line if isinstance(line, str) else "",
            str(session_id or "ssh-anonymous"),
            user=user,
            action=action if isinstance(action, str) else "run",
            interactive=args.get("interactive") is True,
            line_name="ssh",
            origin=origin if isinstance(origin, str) else None,
        )

    async def _handle(self, op: str, args: dict[str, Any]) -> Any:
        if op == "subscribed":
            return {"seq": self.store.last_seq}
        if op == "cli":
            return await self._cli_request(args)
        if op == "ssh_cli":
            return await self._ssh_cli_request(args)
        if op == cfg_api.Commit.op:
            req = decode_args(args, cfg_api.Commit)
            ops = [Op(kind=o.kind, key=o.key, body=o.body) for o in req.ops]
            change = await self.commit(ops, user=req.user, source=req.source, command=req.command)
            return cfg_api.CommitResult(seq=change.seq)
        if op == cfg_api.List.op:
            return self.store.list(decode_args(args, cfg_api.List).kind)
        if op == cfg_api.Get.op:
            get = decode_args(args, cfg_api.Get)
            return self.store.get(get.kind, get.key)
        if op == cfg_api.SnapshotDigest.op:
            return cfg_api.Digest(digest=self.store.digest(), seq=self.store.last_seq)
        if op == cfg_api.Accounting.op:
            limit = decode_args(args, cfg_api.Accounting).limit
            return [_row(e, e.result) for e in self.store.accounting_log(limit)]
        if op == cfg_api.ChangesSinceTime.op:
            since = decode_args(args, cfg_api.ChangesSinceTime)
            if since.fence:
                self.set_fenced(True)
            return [_row(c, "DISCARDED") for c in self.discarded_changes(since.time)]
        if op == cfg_api.Fence.op:
            # hamgr, before a switchover or reload: no acknowledgement from now
            # on of a change the standby may not have (pending ones stay pending).
            self.set_fenced(decode_args(args, cfg_api.Fence).fenced)
            return cfg_api.Fenced(fenced=self.fenced, seq=self.store.last_seq)
        if op == cfg_api.SyncStatus.op:
            return self.sync.status() if self.sync is not None else {"state": "none"}
        raise IpcError(f"unknown op {op}")


def _row(e: Change | AccountingEntry, result: str) -> cfg_api.AccountingRow:
    return cfg_api.AccountingRow(
        time=e.time, user=e.user, command=e.command, result=result, seq=e.seq
    )


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
