"""Freshness of received frames: replays, duplicates and epoch jumps (issue 12 point 2).

Sans-IO; hamgr asks ``FreshnessFilter.check(frame)`` for every frame of the
peer supervisor's role before the engine sees it, and counts a refusal
under its reason (``show system internal redundancy counters``).

Theory of operation. A sender is ``(role, mac, boot id)``; the boot id is
the one the message carries (``Discovery``, ``HeartbeatRequest``,
``HeartbeatResponse``, ``ResolutionInfo``), frames without one (probes,
acks) belong to the sender's newest boot. Every sender numbers its frames
with one counter (hamgr starts it at the wall clock in microseconds, so a
restarted process continues above its predecessor) across both interfaces.

- **Window.** Per sender a high-water mark ``top`` of ``seq`` and a bitmap
  of the ``WINDOW`` numbers below it: a frame above ``top`` moves it; one
  inside the window not seen yet is accepted (reordering between the
  control and the mgmt interface); one seen already (a duplicate, a replay)
  or below the window is refused (``replay``). Nothing below the first
  frame heard from a sender is accepted (the window starts full): frames
  captured before this node heard the sender, withheld and sent later, are
  refused (the attack suite found this one: an old "no standby" request
  slipped into the window reset the standby).
- **New boots.** The first frame of a boot not seen before must carry a
  ``seq`` above the newest ``seq`` accepted from that MAC minus
  ``BOOT_HORIZON`` (ten minutes of a microsecond clock): a replay of an old
  boot's frames (an old ``Discovery``) is refused, a real new boot or a copy
  of the VSM started now is not. The table of senders is bounded.
- **Epochs.** A frame's epoch above ``EPOCH_LIMIT`` is refused
  (``epoch_limit``), far below the header's u64, so no epoch derived from
  it can overflow; within one boot, an epoch more than ``EPOCH_STEP`` above
  the highest accepted from that sender is refused (``epoch_jump``): a
  peer's epoch rises by one per takeover.

A refused frame changes nothing: neither the window nor the epochs.

``OutstandingRequests``: a heartbeat response must echo a request this
node sent and has not yet seen answered (hamgr records every request it
sends; a response that echoes anything else is refused, ``unsolicited``).
The VEM core uses it for the nonces of its attach requests: an attach ack
must echo one (``new_nonce`` draws them: random, never 0).

VEM frames (both directions) pass a ``FreshnessFilter`` too: in vemmgr's
``ModuleTable`` (VEM->VSM, senders keyed by the VEM's MAC, derived from its
host UUID, and the VEM's boot id) and in ``VemCore`` (VSM->VEM, keyed by the
VSM's system MAC and vemmgr's boot id). Their boot ids ride in ``VemAttach``,
``VemAttachAck``, ``VemHeartbeat`` and ``SwitchRequest``. Those filters run
without the ``EPOCH_STEP`` rule (``epoch_step=None``): a VEM's epoch is the
highest it accepted, which jumps from 0 to the VSM's on its first attach, and
the fencing of VSM epochs is the VEM core's (``stale_epoch``).
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

from openvsm.wire.codec import Frame
from openvsm.wire.messages import (
    Discovery,
    HeartbeatRequest,
    HeartbeatResponse,
    Message,
    ResolutionInfo,
    SwitchRequest,
    VemAttach,
    VemAttachAck,
    VemHeartbeat,
)

WINDOW: Final = 16  # both interfaces interleave: reordering is a few frames at most
BOOT_HORIZON: Final = 600 * 1_000_000  # seq units are microseconds of the sender's clock
EPOCH_LIMIT: Final = 1 << 40
EPOCH_STEP: Final = 64
MAX_SENDERS: Final = 256
_FULL: Final = (1 << WINDOW) - 1


def boot_of(msg: Message) -> int | None:
    if isinstance(
        msg,
        Discovery
        | HeartbeatRequest
        | HeartbeatResponse
        | ResolutionInfo
        | VemAttach
        | VemAttachAck
        | VemHeartbeat
        | SwitchRequest,
    ):
        return msg.boot_id
    return None


def new_nonce() -> int:
    """A fresh random nonce (63 bits, never 0: 0 is what an old peer echoes)."""
    return secrets.randbits(63) | 1


@dataclass
class _Window:
    top: int
    seen: int  # bit i set: seq top - i was accepted (bit 0 is top itself)
    epoch: int


class FreshnessFilter:
    """Refuses replayed, duplicated, too old and epoch-jumping frames. Sans-IO."""

    def __init__(
        self, *, max_senders: int = MAX_SENDERS, epoch_step: int | None = EPOCH_STEP
    ) -> None:
        self.max_senders = max_senders
        self.epoch_step = epoch_step
        self._windows: OrderedDict[tuple[int, str, int | None], _Window] = OrderedDict()
        self._newest_boot: dict[tuple[int, str], int | None] = {}
        self._newest_seq: dict[tuple[int, str], int] = {}

    def check(self, frame: Frame) -> str | None:
        """None when ``frame`` is fresh (and record it), else the reason it is refused."""
        if frame.epoch > EPOCH_LIMIT:
            return "epoch_limit"
        sender = (int(frame.role), frame.mac)
        boot = boot_of(frame.msg)
        if boot is None:
            boot = self._newest_boot.get(sender)
        key = (sender[0], sender[1], boot)
        win = self._windows.get(key)
        if win is None:
            newest = self._newest_seq.get(sender)
            if newest is not None and frame.seq <= newest - BOOT_HORIZON:
                return "replay"
            # Nothing below the first frame heard is taken: a frame an attacker withheld
            # from before this node heard the sender cannot be slipped in afterwards.
            self._windows[key] = _Window(top=frame.seq, seen=_FULL, epoch=frame.epoch)
            while len(self._windows) > self.max_senders:
                self._windows.popitem(last=False)
            self._newest_boot[sender] = boot
        else:
            reason = self._advance(win, frame)
            if reason is not None:
                return reason
            self._windows.move_to_end(key)
        self._newest_seq[sender] = max(self._newest_seq.get(sender, frame.seq), frame.seq)
        if len(self._newest_seq) > self.max_senders:
            self._newest_seq.pop(next(iter(self._newest_seq)))
            self._newest_boot.pop(next(iter(self._newest_boot)), None)
        return None

    def _advance(self, win: _Window, frame: Frame) -> str | None:
        if self.epoch_step is not None and frame.epoch > win.epoch + self.epoch_step:
            return "epoch_jump"
        seq = frame.seq
        if seq > win.top:
            shift = seq - win.top
            win.seen = ((win.seen << shift) | 1) & _FULL if shift < WINDOW else 1
            win.top = seq
        else:
            back = win.top - seq
            if back >= WINDOW or win.seen >> back & 1:
                return "replay"
            win.seen |= 1 << back
        win.epoch = max(win.epoch, frame.epoch)
        return None

    def __len__(self) -> int:
        return len(self._windows)


class OutstandingRequests:
    """Heartbeat requests this node sent and has not yet seen answered. Sans-IO.

    A ``HeartbeatResponse`` must echo (``echo_seq``) one of them; it is then
    answered and gone, so a replayed or forged-from-capture response is
    refused (``unsolicited``). Bounded: only the newest ``keep`` requests are
    remembered (older ones are as good as lost to the heartbeat loss timer).
    """

    def __init__(self, keep: int = 64) -> None:
        self.keep = keep
        self._seqs: OrderedDict[int, int] = OrderedDict()  # request -> answers still due

    def sent(self, seq: int, times: int = 1) -> None:
        """Record a request; ``times``: to how many peers it went (each may answer once)."""
        self._seqs[seq] = self._seqs.get(seq, 0) + max(1, times)
        while len(self._seqs) > self.keep:
            self._seqs.popitem(last=False)

    def answered(self, echo_seq: int) -> bool:
        """True (and count the answer) when ``echo_seq`` is an outstanding request."""
        due = self._seqs.get(echo_seq)
        if due is None:
            return False
        if due <= 1:
            del self._seqs[echo_seq]
        else:
            self._seqs[echo_seq] = due - 1
        return True

    def __len__(self) -> int:
        return len(self._seqs)
