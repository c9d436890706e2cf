"""cfgmgr's side of replication: runs the sync sender (active) or receiver
(standby) of ``openvsm.sync.transport`` and keeps hamgr informed.

- Sender progress (``none``/``cold``/``warm``/``hot``, ``out_of_sync``) goes
  to hamgr's ``sync_state``: it drives the internal state strings ("Active
  with warm standby" ...) and, after a buffer overflow, the standby's reset.
- It feeds the write-ack gate (``cm.acks``, ``openvsm.cfgmgr.ackgate``):
  the sender's acks and progress (hot, out of sync) and hamgr's status
  (an active hamgr declaring the standby lost detaches it); the gate's
  effects mark the standby out of sync or detach it. No ack rule lives here.
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
from typing import Any

import msgspec

from openvsm.cfgmgr.host import ReplicationHost
from openvsm.contracts import hamgr as hamgr_api
from openvsm.contracts.hamgr import HaStatus, SyncStateName
from openvsm.credentials import sync_tls
from openvsm.ipc import IpcClient, IpcError, subscribe
from openvsm.sync.stream import ReceiverState
from openvsm.sync.transport import SyncReceiver, SyncSender

log = logging.getLogger("cfgmgr.sync")

# What a standby reports to hamgr for each receiver state: "none" = no stream
# yet (reconnecting; hamgr may hold a "hot" for its grace), "cold" = a bulk sync.
_RECEIVER_SYNC: dict[ReceiverState, SyncStateName] = {
    ReceiverState.IDLE: "none",
    ReceiverState.CHALLENGED: "none",
    ReceiverState.HELLO_SENT: "none",
    ReceiverState.SNAPSHOT: "cold",
    ReceiverState.STREAMING: "hot",
    ReceiverState.REFUSED: "cold",
}


class Replication:
    def __init__(self, cm: ReplicationHost, state: str) -> None:
        self.cm = cm
        self.state = state
        cfg = cm.cfg
        epoch = cm.ha.epoch
        self.sender: SyncSender | None = None
        self.receiver: SyncReceiver | None = None
        self._hamgr_state: hamgr_api.SyncState | None = None
        self._push = asyncio.Event()
        self._pusher: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._resets: set[asyncio.Task[None]] = set()
        self._reset_client = IpcClient(cm.cfg.rundir.hamgr, timeout=2.0)
        self._lease: asyncio.Task[None] | None = None
        self._stopped = False
        if state == "active":
            if cfg.control.peer is not None:
                self.sender = SyncSender(
                    cm.store,
                    cfg.control.peer.addr,
                    cfg.pair_keys,
                    epoch=epoch,
                    buffer_bytes=cfg.sync_buffer_bytes,
                    on_state=self._on_sender_state,
                    on_acked=cm.acks.standby_acked,
                    ssl_context=sync_tls(cfg.tls_cert, cfg.tls_key, server=False),
                )
                cm.acks.standby = self.sender
        else:
            self.receiver = SyncReceiver(
                cfg.control.local.addr,
                cm.store,
                cfg.pair_keys,
                epoch=epoch,
                boot_id=cm.ha.boot_id,
                on_applied=cm.on_replicated,
                on_reset=self._on_reset,
                on_snapshot=self._on_snapshot,
                writer=cm.writer,
                ssl_context=sync_tls(cfg.tls_cert, cfg.tls_key, server=True),
            )

    async def start(self) -> None:
        self._lease = asyncio.create_task(self._hold_lease())
        self._pusher = asyncio.create_task(self._push_to_hamgr())
        if self.sender is not None and self.cm.ha.peer_present:
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

    def start_attached(self) -> None:
        """A restarted cfgmgr on an active with a standby (``Cfgmgr._start_role``)."""
        if self.sender is not None:
            self.sender.attach()
            self.cm.acks.start_attached()

    def status(self) -> dict[str, Any]:
        if self.sender is not None:
            return {"role": "sender", **self.sender.status()}
        if self.receiver is not None:
            return {"role": "receiver", **self.receiver.status()}
        return {"role": "none"}

    def repush(self) -> None:
        """Tell hamgr the sync state again (it restarted)."""
        if self.sender is not None:
            self._on_sender_state(self.sender.stream_status())
        else:
            self._push.set()

    def on_ha_status(self, status: HaStatus) -> None:
        if self.sender is not None and status.peer_present and not self._stopped:
            self.sender.start_soon()
        if self.sender is not None:
            self.sender.raise_epoch(status.epoch)
            self.cm.acks.ha_status(
                active=status.state == "active",
                peer_lost=status.peer_lost,
                peer_present=status.peer_present,
            )

    async def _hold_lease(self) -> None:
        """Subscribe to hamgr's ``sync`` topic for as long as this runs (module doc)."""
        path = self.cm.cfg.rundir.hamgr
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
            state = _RECEIVER_SYNC[self.receiver.state]
            if state != last:
                last = state
                self._hamgr_state = hamgr_api.SyncState(state=state)
                self._push.set()
            await asyncio.sleep(0.05)

    # ---- callbacks from the transport ----------------------------------------
    def _on_sender_state(self, st: dict[str, Any]) -> None:
        if st.get("out_of_sync"):
            self.cm.acks.standby_out_of_sync()
        elif st.get("state") == "hot":
            self.cm.acks.standby_hot()
        try:
            self._hamgr_state = msgspec.convert(
                {"state": st.get("state", "none"), "out_of_sync": bool(st.get("out_of_sync"))},
                hamgr_api.SyncState,
            )
        except msgspec.ValidationError as exc:
            log.error("sync sender reports a state hamgr does not know: %s", exc)
            return
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
            await self._reset_client.ask(
                hamgr_api.SyncReset(reason="rst" if reason == "rst" else "eof", hot=hot)
            )
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
                await self.cm.hamgr.ask(state)
            except IpcError:
                await asyncio.sleep(0.1)
                self._push.set()
