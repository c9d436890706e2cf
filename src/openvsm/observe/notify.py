"""keepalived-style notify hooks, run by cfgmgr on settled redundancy transitions.

Theory of operation
===================

``NotifyCore`` (pure) turns hamgr's status events into ``Job``s. A status is
*settled* in three states (``NotifyState``): ``ACTIVE`` (hamgr ``active``),
``STANDBY`` (``standby``) and ``FAULT`` (``reloading``: the node is going
down); ``initializing`` is not a transition anyone acts on. A settled status
whose (state, epoch, hamgr boot id) differs from the last one notified makes
one job: the per-state hook (``notify_active`` / ``notify_standby`` /
``notify_fault``) then the generic ``notify``, each run as
``PROGRAM DOMAIN NODE STATE EPOCH`` (a program with arguments is split
as a shell would, without a shell). The last notified key is kept in the run
directory (``notify-last.json``) so a cfgmgr that sysmgr restarts does not
announce the same transition twice; a node boot clears the run directory, so
the first settled state after a boot is always announced.

``NotifyRunner`` (the adapter) follows hamgr's ``status`` topic on its own
subscription (never hamgr's loop: hamgr only publishes), queues jobs and runs
them one at a time in order, so hooks of one node never run concurrently.
Each program gets ``timeout`` seconds; then its process group is killed. A
failing, missing or timed-out hook is logged and counted
(``openvsm_notify_hook_runs_total{state,result}``) and the next job runs:
nothing here can delay a transition, which hamgr has already made.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import json
import logging
import os
import shlex
import signal
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from openvsm.config import ObserveConfig
from openvsm.contracts.hamgr import HaStatus
from openvsm.node import RunDir

log = logging.getLogger("cfgmgr.notify")


class NotifyState(enum.Enum):
    ACTIVE = "ACTIVE"
    STANDBY = "STANDBY"
    FAULT = "FAULT"


_SETTLED: Final = {
    "active": NotifyState.ACTIVE,
    "standby": NotifyState.STANDBY,
    "reloading": NotifyState.FAULT,
}


class HookResult(enum.Enum):
    OK = "ok"
    FAILED = "failed"
    TIMEOUT = "timeout"


@dataclass(frozen=True)
class Job:
    state: NotifyState
    epoch: int
    programs: tuple[str, ...]
    argv_tail: tuple[str, ...]  # DOMAIN NODE STATE EPOCH


def programs_for(cfg: ObserveConfig, state: NotifyState) -> tuple[str, ...]:
    specific = {
        NotifyState.ACTIVE: cfg.notify_active,
        NotifyState.STANDBY: cfg.notify_standby,
        NotifyState.FAULT: cfg.notify_fault,
    }[state]
    return tuple(p for p in (specific, cfg.notify) if p)


class NotifyCore:
    """Status events in, jobs out (no I/O)."""

    def __init__(
        self, cfg: ObserveConfig, *, domain: int, node: str, last: tuple[str, int, Any] | None
    ) -> None:
        self.cfg = cfg
        self.domain, self.node = domain, node
        self.last = last

    def on_status(self, status: HaStatus) -> Job | None:
        state = _SETTLED.get(status.state)
        if state is None:
            return None
        epoch = status.epoch
        key = (state.value, epoch, status.boot_id)
        if key == self.last:
            return None
        self.last = key
        programs = programs_for(self.cfg, state)
        if not programs:
            return None
        return Job(state, epoch, programs, (str(self.domain), self.node, state.value, str(epoch)))


Counter = Callable[[NotifyState, HookResult], None]


async def run_program(argv: list[str], timeout: float) -> HookResult:
    """Run one hook; kill its process group past ``timeout``."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as exc:
        log.error("notify hook %s cannot run: %s", argv[0], exc)
        return HookResult.FAILED
    try:
        async with asyncio.timeout(timeout):
            _, err = await proc.communicate()
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        log.error("notify hook %s killed after %.1f s", argv[0], timeout)
        return HookResult.TIMEOUT
    if proc.returncode != 0:
        tail = (err or b"").decode(errors="replace").strip()[-300:]
        log.error("notify hook %s exited %s: %s", argv[0], proc.returncode, tail)
        return HookResult.FAILED
    return HookResult.OK


class NotifyRunner:
    def __init__(
        self,
        cfg: ObserveConfig,
        *,
        domain: int,
        node: str,
        run_dir: Path,
        count: Counter,
    ) -> None:
        self.cfg = cfg
        self.last_path = RunDir(run_dir).notify_last
        self.core = NotifyCore(cfg, domain=domain, node=node, last=self._read_last())
        self.count = count
        self.queue: collections.deque[Job] = collections.deque()
        self._wake = asyncio.Event()
        self.ran: list[tuple[str, str, HookResult]] = []  # (program, state, result), recent
        self.idle = asyncio.Event()
        self.idle.set()

    def _read_last(self) -> tuple[str, int, Any] | None:
        try:
            state, epoch, boot = json.loads(self.last_path.read_text())
            return (str(state), int(epoch), boot)
        except (OSError, ValueError, TypeError):
            return None

    def _write_last(self) -> None:
        if self.core.last is None:
            return
        with contextlib.suppress(OSError):
            tmp = self.last_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(list(self.core.last)))
            tmp.replace(self.last_path)

    def on_status(self, status: HaStatus) -> None:
        before = self.core.last
        job = self.core.on_status(status)
        if self.core.last != before:
            self._write_last()
        if job is not None:
            self.queue.append(job)
            self.idle.clear()
            self._wake.set()

    async def follow(self, events: AsyncIterator[HaStatus]) -> None:
        async for status in events:
            self.on_status(status)

    async def work(self) -> None:
        """Run queued jobs one at a time, in order (a task of cfgmgr's)."""
        while True:
            if not self.queue:
                self.idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            job = self.queue.popleft()
            for program in job.programs:
                argv = [*shlex.split(program), *job.argv_tail]
                result = await run_program(argv, self.cfg.notify_timeout_s)
                self.count(job.state, result)
                self.ran = [*self.ran[-49:], (program, job.state.value, result)]
