"""VEM scale benchmark (issue: VEM agent and module management).

A real VSM pair (``Lab``) and one ``openvsm vem-sim`` process simulating N VEMs
(the real ``VemCore``, one UDP socket each, 1 s heartbeats, headless after
15 s). For each N it prints:

- cold attach: vem-sim started -> every module attached to the active;
- steady state: CPU of the active's vemmgr and hamgr (and cfgmgr), % of one
  core, from ``/proc/<pid>/stat`` over a window (pids from ``show system
  internal sysmgr services | json``); the standby's and vem-sim's too;
- ``system switchover``: command -> every module attached to the new active;
- SIGKILL of the active: kill -> the standby reports active, and -> every
  module attached to it (the difference is the VEM part).

"Attached to node X" is X's vemmgr counting a new attach for every module (op
``counters``: per-module ``attaches`` above the value before the event),
polled every ``--poll`` seconds (the resolution of the times). Timers: VSM->VEM
and VEM heartbeats 1 s, module loss / VEM headless 15 s (the seed's); the
pair's own heartbeats are 1 s with the shortest loss interval allowed
(6 s) so a kill is detected in a bench-friendly time.

Each size's summary row is followed by its ratios to the goals of issue 15
point 4 (vemmgr < 25 % of a core at 10,000 VEMs, scaled linearly to the
size run; all attached < 3 s, as is) and to main's figures
before the batched VEM socket where the issue gives them (1000, 5000,
10000); vem-sim's own CPU is printed apart.

    .venv/bin/python bench/vem_scale.py --counts 1000,10000  # the issue's goal sizes
    .venv/bin/python bench/vem_scale.py                      # 250, 1000, 2000
    .venv/bin/python bench/vem_scale.py --counts 1000 --window 20
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

from openvsm.lab.benchfmt import same_run_ratio
from openvsm.lab.common import LabError, ipc_call, signal_group, wait_for
from openvsm.lab.lab import TIMER_PROFILES, Lab

SAME_RUN_BASELINE = "the smallest --counts size of the same run (switchover cost per VEM)"

TIMER_PROFILES.setdefault(
    "bench",
    {
        "heartbeat_interval_ms": 1000,
        "max_loss_interval_ms": 6000,
        "discovery_window_ms": 3000,
        "vem_heartbeat_ms": 1000,
        "vem_headless_ms": 15000,
    },
)
# rest=False: these lines land in the nodes' [vem] section (vemmgr's own timers).
VEMMGR_TOML = "heartbeat_interval_ms = 1000\nloss_ms = 15000\n"
CLK_TCK = os.sysconf("SC_CLK_TCK")
# issue 15 point 4: goals at 10,000 VEMs, and main's figures before the batched
# socket (VEMs -> (vemmgr % of a core, switchover s, SIGKILL -> all attached s)).
GOAL_VEMMGR_PCT = 25.0
GOAL_ATTACHED_S = 3.0
BASELINE = {1000: (8.5, 0.84, 0.65), 5000: (31.5, 4.72, 2.52), 10000: (53.7, 8.46, 10.85)}


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds (/proc/<pid>/stat fields 14 and 15)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def service_pids(lab: Lab, node: str) -> dict[str, int]:
    data = lab.cli_json(node, "show system internal sysmgr services")
    return {
        str(r["name"]): int(r["pid"]) for r in data["TABLE_service"]["ROW_service"] if r.get("pid")
    }


def other(name: str) -> str:
    return "secondary" if name == "primary" else "primary"


def attaches(lab: Lab, node: str) -> dict[int, tuple[int, str]]:
    """module -> (attaches counted by this node's vemmgr, status)."""
    data = ipc_call(lab.rundir(node) / "vemmgr.sock", "counters", timeout=30.0)
    rows = data["TABLE_vem_counters"]["ROW_vem_counters"]
    return {int(r["module"]): (int(r["attaches"]), str(r["status"])) for r in rows}


def wait_attached(
    lab: Lab, node: str, count: int, before: dict[int, tuple[int, str]], t0: float, args: Any
) -> float:
    """Seconds from ``t0`` until ``node`` counted a new attach of ``count`` modules."""

    def done() -> bool:
        now = attaches(lab, node)
        fresh = [
            m for m, (n, status) in now.items() if status == "ok" and n > before.get(m, (0, ""))[0]
        ]
        return len(fresh) >= count

    wait_for(done, args.timeout, f"{count} VEMs to attach to {node}", interval=args.poll)
    return time.monotonic() - t0


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def start_sim(lab: Lab, count: int, name: str) -> subprocess.Popen[bytes]:
    vsms = [f"{n.vem[0]}:{n.vem[1]}" for n in lab.nodes.values()]
    cmd = [sys.executable, "-m", "openvsm", "vem-sim", "--count", str(count)]
    for v in vsms:
        cmd += ["--vsm", v]
    cmd += [
        "--domain",
        str(lab.domain_id),
        "--vem-key-file",  # each simulated host signs with its derived key
        str(lab.vem_key_file),
        "--name",
        name,
        "--heartbeat-ms",
        "1000",
        "--headless-ms",
        "15000",
    ]
    log = (lab.root / f"{name}.log").open("ab")
    try:
        return subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=raise_nofile,
        )
    finally:
        log.close()


def steady_cpu(pids: dict[str, int], window: float) -> dict[str, float]:
    """% of one core per named pid over ``window`` seconds."""
    start = {k: cpu_seconds(p) for k, p in pids.items()}
    t0 = time.monotonic()
    time.sleep(window)
    dt = time.monotonic() - t0
    return {k: 100.0 * (cpu_seconds(p) - start[k]) / dt for k, p in pids.items()}


def cpu_now(pids: dict[str, int]) -> dict[str, float]:
    return {k: cpu_seconds(p) for k, p in pids.items()}


def cpu_used(pids: dict[str, int], start: dict[str, float]) -> str:
    """CPU seconds each process used since ``start`` (how much of a phase was work)."""
    used = {k: cpu_seconds(p) - start[k] for k, p in pids.items()}
    return ", ".join(f"{k} {v:.2f} s" for k, v in used.items())


def fmt_cpu(cpu: dict[str, float]) -> str:
    return "  ".join(f"{k} {v:5.1f}%" for k, v in cpu.items())


def run_size(count: int, args: argparse.Namespace) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix=f"vem-scale-{count}-", dir=args.dir))
    lab = Lab(
        root,
        timers="bench",
        rest=False,
        module_limit=max(1024, count + 8),
        extra_node_toml=VEMMGR_TOML,
    )
    sim: subprocess.Popen[bytes] | None = None
    result: dict[str, Any] = {"count": count}
    try:
        active = lab.start(timeout=120.0)
        standby = other(active)
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(f"\n== {count} VEMs (lab {root}, active {active}; load average {load})", flush=True)

        # A service may still be restarting (sysmgr restarts one that failed to bind).
        for node in (active, standby):
            sock = lab.rundir(node) / "vemmgr.sock"
            wait_for(partial(ipc_call, sock, "counters"), args.timeout, f"{node}'s vemmgr")
        before = attaches(lab, active)
        svc = service_pids(lab, active)
        target = {k: svc[k] for k in ("vemmgr", "cfgmgr")}
        start_cpu = cpu_now(target)
        t0 = time.monotonic()
        sim = start_sim(lab, count, "sim")
        result["cold"] = wait_attached(lab, active, count, before, t0, args)
        print(
            f"cold attach of {count}: {result['cold']:.2f} s "
            f"(CPU used: {cpu_used(target, start_cpu)})",
            flush=True,
        )

        time.sleep(args.settle)
        pids = {f"{active}/{k}": v for k, v in service_pids(lab, active).items()}
        pids.update({f"{standby}/{k}": v for k, v in service_pids(lab, standby).items()})
        watched = {
            k: v
            for k, v in pids.items()
            if k.split("/")[1] in ("vemmgr", "hamgr", "cfgmgr", "sysmgr")
        }
        watched["vem-sim"] = sim.pid
        cpu = steady_cpu(watched, args.window)
        result["cpu"] = cpu
        print(f"steady CPU over {args.window:g} s (% of one core):", flush=True)
        for node in (active, standby):
            part = {k.split("/")[1]: v for k, v in cpu.items() if k.startswith(node + "/")}
            print(f"  {node:9s} ({'active' if node == active else 'standby'}): {fmt_cpu(part)}")
        print(f"  vem-sim: {cpu['vem-sim']:.1f}%", flush=True)

        # Controlled switchover: active -> standby.
        before = attaches(lab, standby)
        svc = service_pids(lab, standby)
        target = {k: svc[k] for k in ("vemmgr", "cfgmgr")}
        start_cpu = cpu_now(target)
        t0 = time.monotonic()
        res = lab.cli(active, "system switchover")
        if res.get("error"):
            raise LabError(f"switchover refused: {res.get('output')}")
        result["switchover"] = wait_attached(lab, standby, count, before, t0, args)
        print(
            f"switchover {active} -> {standby}: all {count} attached to the new active "
            f"in {result['switchover']:.2f} s (CPU used: {cpu_used(target, start_cpu)})",
            flush=True,
        )
        lab.wait_pair(timeout=120.0)
        time.sleep(args.settle)
        new_active, new_standby = standby, active

        # SIGKILL of the active's whole node.
        before = attaches(lab, new_standby)
        svc = service_pids(lab, new_standby)
        target = {k: svc[k] for k in ("vemmgr", "cfgmgr")}
        start_cpu = cpu_now(target)
        t0 = time.monotonic()
        lab.kill_node(new_active)
        wait_for(
            lambda: (lab.status(new_standby) or {}).get("this_sup_rdn_state") == "Active",
            args.timeout,
            "the standby to take over",
            interval=args.poll,
        )
        result["takeover"] = time.monotonic() - t0
        result["kill"] = wait_attached(lab, new_standby, count, before, t0, args)
        print(
            f"SIGKILL of {new_active}: {new_standby} active after {result['takeover']:.2f} s, "
            f"all {count} attached to it after {result['kill']:.2f} s "
            f"({result['kill'] - result['takeover']:.2f} s after it became active; "
            f"CPU used: {cpu_used(target, start_cpu)})",
            flush=True,
        )
    finally:
        signal_group(sim, signal.SIGTERM)
        lab.stop()
        if args.dir is None:  # kept only where asked (--dir), for its logs
            shutil.rmtree(root, ignore_errors=True)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", default="250,1000,2000", help="comma-separated VEM counts")
    parser.add_argument("--window", type=float, default=15.0, help="CPU sampling window (s)")
    parser.add_argument("--settle", type=float, default=5.0, help="wait before sampling (s)")
    parser.add_argument("--poll", type=float, default=0.1, help="attach polling interval (s)")
    parser.add_argument("--timeout", type=float, default=180.0, help="per-phase deadline (s)")
    parser.add_argument(
        "--dir", type=Path, default=None, help="parent of the lab directories (kept)"
    )
    args = parser.parse_args()
    counts = [int(c) for c in args.counts.split(",") if c.strip()]
    print(
        f"vem_scale: {os.cpu_count()} CPUs; VEM heartbeats 1 s, module loss 15 s; "
        f"times polled every {args.poll:g} s",
        flush=True,
    )
    results = [run_size(n, args) for n in counts]
    print("\nsummary (CPU: % of one core, active node, steady state)")
    print(
        f"{'VEMs':>6} {'cold s':>7} {'vemmgr':>7} {'hamgr':>6} {'cfgmgr':>7} "
        f"{'switchover s':>13} {'kill->active s':>15} {'kill->all s':>12}"
    )
    for r in results:
        act = {k.split("/")[1]: v for k, v in r["cpu"].items() if "/" in k}
        # The active's services are the first ones listed per node; pick by the larger vemmgr.
        nodes = {k.split("/")[0] for k in r["cpu"] if "/" in k}
        node = max(nodes, key=lambda n: r["cpu"].get(f"{n}/vemmgr", 0.0))
        act = {k.split("/")[1]: v for k, v in r["cpu"].items() if k.startswith(node + "/")}
        print(
            f"{r['count']:>6} {r['cold']:>7.2f} {act.get('vemmgr', 0):>6.1f}% "
            f"{act.get('hamgr', 0):>5.1f}% {act.get('cfgmgr', 0):>6.1f}% "
            f"{r['switchover']:>13.2f} {r['takeover']:>15.2f} {r['kill']:>12.2f}"
            f"   vem-sim {r['cpu'].get('vem-sim', 0.0):5.1f}%"
        )
        print_ratios(r["count"], act.get("vemmgr", 0.0), r["switchover"], r["kill"])
    if len(results) > 1:
        lo, hi = results[0], results[-1]
        per_vem = [r["switchover"] / r["count"] for r in (lo, hi)]
        print(
            same_run_ratio(
                f"switchover s per VEM at {hi['count']}",
                per_vem[1],
                per_vem[0],
                f"at {lo['count']}",
            )
        )
    return 0


def print_ratios(count: int, vemmgr: float, switchover: float, kill: float) -> None:
    """This run against the goals (scaled to ``count`` VEMs) and main's figures."""
    share = count / 10_000
    goals = (GOAL_VEMMGR_PCT * share, GOAL_ATTACHED_S)
    print(
        f"{'':>6} vs goal: vemmgr x{vemmgr / goals[0]:.2f} of "
        f"{goals[0]:.1f}%, switchover x{switchover / goals[1]:.2f} and kill "
        f"x{kill / goals[1]:.2f} of {goals[1]:.2f} s"
    )
    base = BASELINE.get(count)
    if base is not None:
        print(
            f"{'':>6} vs main ({base[0]}% / {base[1]} s / {base[2]} s): vemmgr "
            f"x{vemmgr / base[0]:.2f}, switchover x{switchover / base[1]:.2f}, "
            f"kill x{kill / base[2]:.2f}"
        )


if __name__ == "__main__":
    sys.exit(main())
