"""Entry of one service process: ``openvsm service NAME --config FILE``.

Sets up logging to ``RUNDIR/NAME.log``, ties the process's life to sysmgr's
(PR_SET_PDEATHSIG), runs the service's coroutine, and maps the outcome to an
exit code that sysmgr understands: 0 stopped, ``RELOAD_EXIT`` the node must
reload, ``FATAL_EXIT`` the node cannot run (e.g. a corrupted store: restarting
would not help and re-initialising would lose configuration), anything else a
crash.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import logging
import signal
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from openvsm.config import ConfigError, NodeConfig
from openvsm.identity import load_node
from openvsm.node import (
    FATAL_EXIT,
    OPTIONAL_SERVICES,
    RELOAD_EXIT,
    SERVICES,
    NodeFatal,
    NodeReload,
)


def _die_with_parent() -> None:
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)


def setup_logging(path: Path, name: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        filename=str(path),
        level=logging.INFO,
        format=f"%(asctime)s {name}[%(process)d] %(levelname)s %(name)s: %(message)s",
    )


def _runner(name: str) -> Callable[[NodeConfig], Coroutine[Any, Any, None]]:
    """The entry coroutine of service ``name``, imported only in its own process
    (the services import ``openvsm.node``, never this module)."""
    if name == "hamgr":
        from openvsm.redundancy.hamgr import run_hamgr

        return run_hamgr
    if name == "cfgmgr":
        from openvsm.cfgmgr.service import run_cfgmgr

        return run_cfgmgr
    if name == "vemmgr":
        from openvsm.modules.vemmgr import run_vemmgr

        return run_vemmgr
    if name == "mgmt":
        from openvsm.mgmt.service import run_mgmt

        return run_mgmt
    raise ValueError(f"unknown service {name!r}")


async def _main(name: str, cfg: NodeConfig) -> int:
    runner = _runner(name)
    task: asyncio.Task[None] = asyncio.create_task(runner(cfg))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    try:
        await task
    except asyncio.CancelledError:
        return 0
    except NodeReload as exc:
        cfg.rundir.reload_reason.write_text(f"{name}: {exc.reason}\n")
        logging.getLogger(name).warning("node reload requested: %s", exc.reason)
        return RELOAD_EXIT
    except NodeFatal as exc:
        cfg.rundir.fatal_reason.write_text(f"{name}: {exc.reason}\n")
        logging.getLogger(name).error("cannot run: %s", exc.reason)
        print(f"openvsm service {name}: {exc.reason}", file=sys.stderr, flush=True)
        return FATAL_EXIT
    return 0


def raise_priority() -> None:
    """hamgr's heartbeats must keep their timing when the node is busy (DESIGN §1):
    real-time round-robin where permitted, else a high nice level. Done before the
    service's imports so that even a restart under load is quick."""
    import os

    try:
        os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(1))
    except (OSError, AttributeError):
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, 0, -10)


def cli_main(argv: list[str]) -> int:
    if argv[:1] == ["hamgr"]:
        raise_priority()
    parser = argparse.ArgumentParser(prog="openvsm service")
    parser.add_argument("name", choices=(*SERVICES, *OPTIONAL_SERVICES))
    parser.add_argument("--config", required=True, type=Path)
    args = parser.parse_args(argv)
    try:
        cfg = load_node(args.config)
    except (ConfigError, OSError) as exc:
        print(f"openvsm service: {exc}", file=sys.stderr)
        return 2
    _die_with_parent()
    setup_logging(cfg.rundir.log(args.name), args.name)
    try:
        return asyncio.run(_main(args.name, cfg))
    except Exception:
        logging.getLogger(args.name).exception("service crashed")
        raise
