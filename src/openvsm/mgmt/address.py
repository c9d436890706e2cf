"""The pair's shared management address: held by the active only.

Theory of operation (``AddressCore``, sans-IO, virtual time).

Input: hamgr's ``status`` topic (``state``, ``split_brain``) and the clock.
Output: effects ``AddAddress``, ``RemoveAddress``, ``SendGarp`` that the
service carries out (``LinuxAddress``: ``ip address`` and AF_PACKET).

States (``Holding``): ``RELEASED`` and ``HELD``.

- RELEASED -> HELD when hamgr reports ``active`` and no split-brain
  resolution is pending (``split_brain`` false). A node that became active
  during a resolution waits for its outcome: the winner takes the address,
  the loser reloads and never took it.
- HELD -> RELEASED as soon as hamgr reports anything but ``active``
  (``reloading`` before a switchover or a reload, ``standby``, a new hamgr
  ``initializing``), and on ``stop`` (the service is stopped first when the
  node reloads or shuts down). An active that finds a resolution pending
  keeps the address until the outcome: if it loses it reloads (released
  then); if it wins it announces again.
- On taking the address, and again when a resolution pending while held ends
  with this node still active (it won), gratuitous ARP is scheduled: a burst
  of ``burst`` announcements ``interval`` apart (each a request and a reply),
  and a second burst ``second_burst_after`` after the first started (Linux
  ignores a neighbour update within ``locktime`` of the previous one).
  Releasing cancels the announcements not yet sent.

``next_deadline`` tells the driver when to call ``on_timer``.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import fcntl
import logging
import socket
import struct
from dataclasses import dataclass
from typing import Final

from openvsm.config import SharedMgmtConfig

log = logging.getLogger("mgmt.address")

GARP_BURST: Final = 5
GARP_INTERVAL: Final = 0.2
GARP_SECOND_BURST_AFTER: Final = 1.0


class Holding(enum.Enum):
    RELEASED = "released"
    HELD = "held"


@dataclass(frozen=True)
class AddAddress:
    pass


@dataclass(frozen=True)
class RemoveAddress:
    pass


@dataclass(frozen=True)
class SendGarp:
    index: int  # 0-based, over both bursts


Effect = AddAddress | RemoveAddress | SendGarp


class AddressCore:
    def __init__(
        self,
        *,
        burst: int = GARP_BURST,
        interval: float = GARP_INTERVAL,
        second_burst_after: float = GARP_SECOND_BURST_AFTER,
    ) -> None:
        self.state = Holding.RELEASED
        self.burst = burst
        self.interval = interval
        self.second_burst_after = second_burst_after
        self._garp_due: list[float] = []
        self._garps_sent = 0
        self._resolution_pending = False
        self.taken_at: float | None = None
        self.announcements = 0

    def _schedule(self, now: float) -> None:
        first = [now + i * self.interval for i in range(self.burst)]
        second = [now + self.second_burst_after + i * self.interval for i in range(self.burst)]
        self._garp_due = first + second
        self._garps_sent = 0
        self.announcements += 1

    def on_status(self, now: float, state: str, split_brain: bool) -> list[Effect]:
        effects: list[Effect] = []
        if state != "active":
            self._resolution_pending = False
            return self._release()
        if self.state is Holding.RELEASED:
            if split_brain:
                return effects
            self.state = Holding.HELD
            self.taken_at = now
            self._schedule(now)
            return [AddAddress(), *self.on_timer(now)]
        if split_brain:
            self._resolution_pending = True
        elif self._resolution_pending:
            # Still active after the resolution: this node won; announce again.
            self._resolution_pending = False
            self._schedule(now)
            effects += self.on_timer(now)
        return effects

    def on_timer(self, now: float) -> list[Effect]:
        effects: list[Effect] = []
        while self._garp_due and self._garp_due[0] <= now + 1e-9:
            self._garp_due.pop(0)
            effects.append(SendGarp(self._garps_sent))
            self._garps_sent += 1
        return effects

    def next_deadline(self) -> float | None:
        return self._garp_due[0] if self._garp_due else None

    def stop(self) -> list[Effect]:
        return self._release()

    def _release(self) -> list[Effect]:
        self._garp_due = []
        if self.state is Holding.RELEASED:
            return []
        self.state = Holding.RELEASED
        self.taken_at = None
        return [RemoveAddress()]


# ---- Linux ---------------------------------------------------------------

ETH_P_ARP: Final = 0x0806
_SIOCGIFHWADDR: Final = 0x8927


def garp_frames(mac: bytes, ip: bytes) -> tuple[bytes, bytes]:
    """A gratuitous ARP request and reply for ``ip`` at ``mac`` (Ethernet frames)."""
    bcast = b"\xff" * 6
    eth = bcast + mac + struct.pack("!H", ETH_P_ARP)

    def arp(op: int, target_mac: bytes) -> bytes:
        body = struct.pack("!HHBBH", 1, 0x0800, 6, 4, op) + mac + ip + target_mac + ip
        return (eth + body).ljust(60, b"\x00")

    return arp(1, b"\x00" * 6), arp(2, bcast)


def device_mac(sock: socket.socket, device: str) -> bytes:
    req = struct.pack("256s", device.encode()[:15])
    res = fcntl.ioctl(sock.fileno(), _SIOCGIFHWADDR, req)
    return res[18:24]


class LinuxAddress:
    """Carries out the core's effects with ``ip address`` and AF_PACKET; errors are
    logged and counted, never raised (the address is best effort, the node goes on)."""

    def __init__(self, cfg: SharedMgmtConfig) -> None:
        self.cfg = cfg
        self.errors = 0
        self.garps_sent = 0

    async def _ip(self, *args: str) -> bool:
        try:
            proc = await asyncio.create_subprocess_exec(
                "ip",
                *args,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
            _, err = await proc.communicate()
        except OSError as exc:
            self.errors += 1
            log.error("ip %s: %s", " ".join(args), exc)
            return False
        if proc.returncode != 0:
            text = err.decode(errors="replace").strip()
            if "File exists" in text or "Cannot assign" in text or "not found" in text:
                return True  # already there / already gone
            self.errors += 1
            log.error("ip %s: %s", " ".join(args), text)
            return False
        return True

    async def add(self) -> bool:
        return await self._ip("address", "add", self.cfg.address, "dev", self.cfg.device)

    async def remove(self) -> bool:
        return await self._ip("address", "del", self.cfg.address, "dev", self.cfg.device)

    def garp(self) -> None:
        try:
            with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP)) as s:
                s.bind((self.cfg.device, 0))
                mac = device_mac(s, self.cfg.device)
                for frame in garp_frames(mac, socket.inet_aton(self.cfg.ip)):
                    s.send(frame)
            self.garps_sent += 1
        except OSError as exc:
            self.errors += 1
            log.error("gratuitous ARP on %s: %s", self.cfg.device, exc)


def remove_now(cfg: SharedMgmtConfig) -> None:
    """Synchronous removal for the service's last moments (SIGTERM)."""
    import subprocess

    with contextlib.suppress(OSError, subprocess.SubprocessError):
        subprocess.run(
            ["ip", "address", "del", cfg.address, "dev", cfg.device],
            capture_output=True,
            timeout=5,
            check=False,
        )


__all__ = [
    "AddAddress",
    "AddressCore",
    "Holding",
    "LinuxAddress",
    "RemoveAddress",
    "SendGarp",
    "garp_frames",
]
