"""cfgmgr's side of replication: runs the sync sender (active) or receiver
(standby) of ``openvsm.sync.transport`` and keeps hamgr informed.

- Sender progress (``none``/``cold``/``warm``/``hot``, ``out_of_sync``) goes
  to hamgr's ``sync_state``: it drives the internal state strings ("Active
  with warm standby" ...) and, after a buffer overflow, the standby's reset.
- hamgr declaring the standby absent detaches the sender, so writes stop
  waiting for acknowledgements that cannot come.
- A standby whose stream is reset by the peer's kernel tells hamgr
  (``sync_reset``): the crash fast path.
- While it runs, it holds a subscription to hamgr's ``sync`` topic (a
  lease): when this process dies, hamgr learns that its stream is down and
  holds a "hot" state only for the bounded grace the restarted cfgmgr has
  to resume the stream (a tail from the standby's applied seq).
- The standby reports "none" while it has no stream (no connection, or no
  Welcome yet: reconnecting), "cold" while it loads a snapshot (or refused
  the active), "hot" while streaming.
- The active's sender connects only once hamgr has a standby
  (``peer_present``), then keeps its connection and reconnects on its own:
  a VSM that has never had a standby (a copy of a node's config started
  beside the pair, aimed at the real standby's address) never streams its
  store into someone else's standby.
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import TYPE_CHECKING, Any

from openvsm.credentials import sync_tls
from openvsm.ipc import IpcClient, IpcError, subscribe
from openvsm.store.pss import Change
from openvsm.sync.stream import ReceiverState
from openvsm.sync.transport import SyncReceiver, SyncSender, SyncStopped

if TYPE_CHECKING:
    from openvsm.cfgmgr.service import Cfgmgr

log = logging.getLogger("cfgmgr.sync")

# Floor of the ack timeout (the max heartbeat loss interval when larger): a
# loaded machine must not cost the standby its sync, a partition must not
# hold writes forever.
ACK_TIMEOUT_MIN_S = 3.0


# A confirmation by hamgr that this node is active is reused this long (s).
CONFIRM_FRESH_S = 0.05

# What a standby reports to hamgr for each receiver state: "none" = no stream
# yet (reconnecting; hamgr may hold a "hot" for its grace), "cold" = a bulk sync.
_RECEIVER_SYNC = {
    ReceiverState.IDLE: "none",
    ReceiverState.HELLO_SENT: "none",
    ReceiverState.SNAPSHOT: "cold",
    ReceiverState.STREAMING: "hot",
    ReceiverState.REFUSED: "cold",
}


class Replication:
    def __init__(self, cm: Cfgmgr, state: str) -> None:
        self.cm = cm
        self.state = state
        cfg = cm.cfg
        epoch = int(cm.ha.get("epoch", 0))
        self.sender: SyncSender | None = None
        self.receiver: SyncReceiver | None = None
        self._hamgr_state: dict[str, Any] | None = None
        self._had_standby = False  # a standby was hot once: going alone needs hamgr's word
        self._confirm_lock = asyncio.Lock()
        self._confirmed_at = -math.inf
        self._push = asyncio.Event()
        self._pusher: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._resets: set[asyncio.Task[None]] = set()
        self._reset_client = IpcClient(cm.cfg.run_dir / "hamgr.sock", timeout=2.0)
        self._lease: asyncio.Task[None] | None = None
        self._stopped = False
        if state == "active":
            if cfg.control.peer is not None:
                self.sender = SyncSender(
                    cm.store,
                    cfg.control.peer.addr,
                    cfg.secret,
                    epoch=epoch,
                    buffer_bytes=cfg.sync_buffer_bytes,
                    on_state=self._on_sender_state,
                    ssl_context=sync_tls(cfg.tls_cert, cfg.tls_key, server=False),
                )
        else:
            self.receiver = SyncReceiver(
                cfg.control.local.addr,
                cm.store,
                cfg.secret,
                epoch=epoch,
                boot_id=int(cm.ha.get("boot_id", 0)),
                on_applied=cm.on_replicated,
                on_reset=self._on_reset,
                on_snapshot=self._on_snapshot,
                ssl_context=sync_tls(cfg.tls_cert, cfg.tls_key, server=True),
            )

    async def start(self) -> None:
        self._lease = asyncio.create_task(self._hold_lease())
        self._pusher = asyncio.create_task(self._push_to_hamgr())
        if self.sender is not None and self.cm.ha.get("peer_present"):
            await self.sender.start()
        if self.receiver is not None:
            await self.receiver.start()
            self._watcher = asyncio.create_task(self._watch_receiver())

    async def stop(self) -> None:
        if self._lease is not None:
            self._lease.cancel()
        self._stopped = True
        if self._pusher is not None:
            self._pusher.cancel()
        if self._watcher is not None:
            self._watcher.cancel()
        if self.sender is not None:
            await self.sender.stop()
        if self.receiver is not None:
            await self.receiver.stop()
        self._reset_client.close()

    @property
    def ack_timeout(self) -> float:
        """How long a write waits for the standby's ack before the active goes on alone."""
        return max(ACK_TIMEOUT_MIN_S, self.cm.cfg.timers.max_loss_interval)

    async def replicate(self, change: Change) -> None:
        sender = self.sender
        if sender is None:
            return
        acked = asyncio.ensure_future(sender.replicate(change))
        # Retrieved even when this caller is gone (cancelled): no orphan error.
        acked.add_done_callback(lambda t: t.cancelled() or t.exception())
        while True:
            try:
                await asyncio.wait_for(asyncio.shield(acked), self.ack_timeout)
                break
            except TimeoutError:
                pass
            except SyncStopped:
                raise IpcError(
                    "% The change was committed on this supervisor but cfgmgr stopped before "
                    "the standby acknowledged it: its outcome is unknown, check "
                    "'show running-config' on the active"
                ) from None
            # Going on without the standby is only safe on a node that is still
            # the active: hamgr must say so now. With hamgr dead or restarting,
            # the standby may be taking over; this node may come back as its
            # standby and reload, and a write acknowledged here would be lost.
            if await self._still_active():
                self._standby_too_slow(sender, change.seq)
            else:
                log.warning(
                    "sync: change %d unacknowledged by the standby and hamgr does not confirm "
                    "this node is active: the write keeps waiting",
                    change.seq,
                )
        if sender.core.acked_seq >= change.seq or not self._had_standby:
            return
        # Released without the standby's ack (buffer overflow, standby detached,
        # out of sync): this node goes on alone, which is only safe while it is
        # the active. With hamgr dead or frozen the standby may be taking over
        # (seed 1000, fault 546: 13 writes released by a buffer overflow).
        while not await self._still_active():
            if self.cm.fenced:
                raise IpcError(
                    "% The change was committed on this supervisor but it is handing over: "
                    "its outcome is unknown, check 'show running-config' on the active"
                )
            await asyncio.sleep(0.1)

    async def _still_active(self) -> bool:
        """hamgr, asked now, says this node is the active (not fenced).

        One question at a time for all waiting writes; a yes is reused for
        ``CONFIRM_FRESH_S``, far below the shortest loss interval (600 ms)
        after which a standby could take over."""
        if self.cm.fenced:
            return False
        async with self._confirm_lock:
            loop = asyncio.get_running_loop()
            if loop.time() - self._confirmed_at < CONFIRM_FRESH_S:
                return not self.cm.fenced
            try:
                status = await self.cm.hamgr.call("status", timeout=1.0)
            except IpcError:
                return False
            ok = isinstance(status, dict) and status.get("state") == "active"
            if ok:
                self._confirmed_at = loop.time()
            return ok and not self.cm.fenced

    def _standby_too_slow(self, sender: SyncSender, seq: int) -> None:
        """No ack within ``ack_timeout`` (control partitioned while mgmt is up: degraded,
        so hamgr keeps the standby present): without this a lone writer, whose
        changes never fill the buffer, would wait forever. Same outcome as a
        buffer overflow: the standby is out of sync (hamgr orders its reset, it
        bulk-syncs when it returns) and writes no longer wait for it."""
        core = sender.core
        if not core.must_wait or core.acked_seq >= seq:
            return
        log.warning(
            "sync: the standby did not acknowledge change %d within %.1f s: marking it out "
            "of sync, continuing alone",
            seq,
            self.ack_timeout,
        )
        sender.mark_out_of_sync()

    def status(self) -> dict[str, Any]:
        if self.sender is not None:
            return {"role": "sender", **self.sender.status()}
        if self.receiver is not None:
            return {"role": "receiver", **self.receiver.status()}
        return {"role": "none"}

    def repush(self) -> None:
        """Tell hamgr the sync state again (it restarted)."""
        if self.sender is not None:
            self._on_sender_state(self.sender.core.status())
        else:
            self._push.set()

    def on_ha_status(self, status: dict[str, Any]) -> None:
        if self.sender is not None and status.get("peer_present") and not self._stopped:
            self.sender.start_soon()
        if self.sender is not None:
            self.sender.core.epoch = max(self.sender.core.epoch, int(status.get("epoch", 0)))
            if (
                status.get("state") == "active"
                and status.get("peer_lost")
                and not status.get("peer_present")
                and self.sender.core.must_wait
            ):
                # hamgr declared the standby lost: writes stop waiting for it. Not
                # on a restarted hamgr that has not heard the standby yet, nor
                # on one that is not active (it may come back as standby).
                self.sender.detach()

    async def _hold_lease(self) -> None:
        """Subscribe to hamgr's ``sync`` topic for as long as this runs (module doc)."""
        path = self.cm.cfg.run_dir / "hamgr.sock"
        while True:
            try:
                async for _ in subscribe(path, "sync"):
                    pass
            except (IpcError, OSError):
                pass
            await asyncio.sleep(0.05)  # hamgr restarting: lease again as soon as it is up

    async def _watch_receiver(self) -> None:
        """Standby: report the stream's state to hamgr (module docstring)."""
        assert self.receiver is not None
        last = ""
        while True:
            state = _RECEIVER_SYNC[self.receiver.core.state]
            if state != last:
                last = state
                self._hamgr_state = {"state": state, "out_of_sync": False}
                self._push.set()
            await asyncio.sleep(0.05)

    # ---- callbacks from the transport ----------------------------------------
    def _on_sender_state(self, st: dict[str, Any]) -> None:
        if st.get("state") == "hot":
            self._had_standby = True
        self._hamgr_state = {
            "state": str(st.get("state", "none")),
            "out_of_sync": bool(st.get("out_of_sync")),
        }
        self._push.set()

    def _on_snapshot(self, seq: int) -> None:
        self.cm.ipc.publish("changes", {"seq": seq, "ops": [], "snapshot": True})

    def _on_reset(self, reason: str, hot: bool) -> None:
        log.warning(
            "sync stream from the active went away (%s, %s)", reason, "hot" if hot else "not hot"
        )
        task = asyncio.get_running_loop().create_task(self._tell_reset(reason, hot))
        self._resets.add(task)
        task.add_done_callback(self._resets.discard)

    async def _tell_reset(self, reason: str, hot: bool) -> None:
        """Its own connection to hamgr: never queued behind a slow call (status,
        sync_state) on the shared one. Each millisecond here delays the takeover."""
        try:
            await self._reset_client.call("sync_reset", reason=reason, hot=hot)
        except IpcError as exc:
            log.warning("could not tell hamgr about the sync reset: %s", exc)

    async def _push_to_hamgr(self) -> None:
        while True:
            await self._push.wait()
            self._push.clear()
            state = self._hamgr_state
            if state is None:
                continue
            try:
                await self.cm.hamgr.call("sync_state", **state)
            except IpcError:
                await asyncio.sleep(0.1)
                self._push.set()
