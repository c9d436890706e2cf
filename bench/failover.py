"""Failover benchmark (issue: VSM pair; issue 11 point 5: the crash fast path every time).

Before each run the benchmark waits for a hot pair (both nodes agree:
``Active with HA standby`` / ``HA standby``), then injects one fault on the
active node:

- ``--fault sigkill`` (default): SIGKILL of the node's whole process group
  (its host lives: the kernel closes the sync connection and the heartbeat
  ports). Expected: the crash fast path, well under the loss interval.
- ``--fault sigstop``: SIGSTOP of the process group (the silent path: no
  reset, no closed port). Expected: the loss interval. The stopped node is
  then SIGKILLed and restarted.
- ``--fault cfgmgr``: SIGKILL of the active's cfgmgr only. Its hamgr lives and
  must answer the standby's liveness probes: a takeover here is a false one
  (split-brain). Reports the probe answer time seen by the standby and the
  number of takeovers (goal: 0). Kills are paced (15.5 s per node) below
  sysmgr's crash-loop rule (5 crashes in 60 s reload the node).

Takeover time = from just before the signal to the standby's first heartbeat
request (or discovery) with state "active" towards the dead node's control
port, timestamped on the wire by this benchmark, not reported by the system.
With CAP_NET_RAW it sniffs the loopback device (AF_PACKET, a BPF filter on
the UDP port, kernel timestamps): nothing is bound in the dead node's place,
so the kernel answers the standby's probes with "port unreachable" as it
would for a crashed VSM on a live host. Without it (or with
``--blind-ports``) it binds the dead node's control and mgmt ports right after
the SIGKILL and timestamps what arrives there: the standby's probes then get
no "port unreachable" and it takes over on the probe timeout, the path of an
L2 deployment or one whose ICMP is filtered. A SIGSTOPped node keeps its
ports: without a sniffer the benchmark polls the standby's
``show system redundancy status`` (coarser; printed).

The path each takeover took is read from the new active's redundancy trace:
``fast/closed`` (the active's ports reported closed), ``fast/timeout`` (no
probe answer within the probe timeout), ``loss`` (the loss interval).

    .venv/bin/python bench/failover.py --runs 20 --timers fast
    .venv/bin/python bench/failover.py --runs 3 --timers default
    .venv/bin/python bench/failover.py --runs 20 --timers fast --blind-ports
    .venv/bin/python bench/failover.py --runs 5 --timers fast --fault sigstop
    .venv/bin/python bench/failover.py --runs 20 --timers fast --fault cfgmgr
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import signal
import socket
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path

from openvsm.lab.benchfmt import same_run_ratio
from openvsm.lab.common import wait_for
from openvsm.lab.lab import TIMER_PROFILES, Lab
from openvsm.wire.codec import Codec, Frame
from openvsm.wire.messages import Discovery, HeartbeatRequest

SAME_RUN_BASELINE = "the loss interval of the timer profile this run uses (takeover against it)"

ETH_P_IP = 0x0800
SO_ATTACH_FILTER = 26
SO_TIMESTAMPNS = 35
PACKET_OUTGOING = 4


def percentile(values: list[float], p: float) -> float:
    s = sorted(values)
    k = (len(s) - 1) * p
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def stats(values: list[float], fmt: str) -> str:
    parts = [
        ("min", min(values)),
        ("median", statistics.median(values)),
        ("p95", percentile(values, 0.95)),
        ("max", max(values)),
    ]
    return "  ".join(f"{name} {value:{fmt}}" for name, value in parts)


class Sniffer:
    """UDP datagrams to one port on the loopback device, with kernel timestamps."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP))
        # BPF, on the IP header: UDP, first fragment, destination port == port.
        prog = [
            (0x30, 0, 0, 9),  # ldb [9]            protocol
            (0x15, 0, 5, 17),  # jeq #17            udp, else drop
            (0x28, 0, 0, 6),  # ldh [6]            flags + fragment offset
            (0x45, 3, 0, 0x1FFF),  # jset #0x1fff  a fragment: drop
            (0xB1, 0, 0, 0),  # ldxb 4*([0]&0xf)   IP header length
            (0x48, 0, 0, 2),  # ldh [x+2]          UDP destination port
            (0x15, 1, 0, port),  # jeq #port       accept, else drop
            (0x06, 0, 0, 0),  # ret #0
            (0x06, 0, 0, 0x40000),  # ret #256k
        ]
        raw = b"".join(struct.pack("HBBI", *ins) for ins in prog)
        self._filter = ctypes.create_string_buffer(raw)
        fprog = struct.pack("HL", len(prog), ctypes.addressof(self._filter))
        self.sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.bind(("lo", ETH_P_IP))

    def drain(self) -> None:
        self.sock.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            while True:
                self.sock.recv(65535)
        self.sock.setblocking(True)

    def recv(self, timeout: float) -> tuple[float, bytes] | None:
        """(wall-clock kernel timestamp, UDP payload) of the next datagram."""
        self.sock.settimeout(timeout)
        try:
            data, anc, _, addr = self.sock.recvmsg(65535, 64)
        except TimeoutError:
            return None
        if addr[2] == PACKET_OUTGOING:  # loopback shows each packet twice
            return self.recv(timeout)
        stamp = time.time()
        for level, kind, blob in anc:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(blob) >= 16:
                sec, nsec = struct.unpack("qq", blob[:16])
                stamp = sec + nsec / 1e9
        ihl = (data[0] & 0x0F) * 4
        return stamp, data[ihl + 8 :]

    def close(self) -> None:
        self.sock.close()


def open_sniffer(port: int) -> Sniffer | None:
    try:
        return Sniffer(port)
    except (PermissionError, OSError) as exc:
        print(f"(no AF_PACKET sniffer: {exc}; polling the standby's status instead)")
        return None


def first_active_frame(sniffer: Sniffer, codec: Codec, until: float) -> float | None:
    while time.time() < until:
        got = sniffer.recv(0.05)
        if got is None:
            continue
        stamp, payload = got
        frame = codec.decode(payload)
        if not isinstance(frame, Frame):
            continue
        msg = frame.msg
        if isinstance(msg, HeartbeatRequest | Discovery) and msg.state == "active":
            return stamp
    return None


def poll_active(lab: Lab, node: str, until: float) -> float | None:
    while time.time() < until:
        st = lab.status(node)
        if st and st.get("this_sup_rdn_state") == "Active":
            return time.time()
    return None


def trace_rows(lab: Lab, node: str) -> list[tuple[float, str]]:
    """(wall time, event) of a node's redundancy trace, from its file (sub-second times)."""
    path = lab.nodes[node].datadir / "redundancy-trace.log"
    rows = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(ValueError, TypeError):
            t, text = json.loads(line)
            rows.append((float(t), str(text)))
    return rows


def takeover_path(lab: Lab, node: str, since: float) -> str:
    for t, text in reversed(trace_rows(lab, node)):
        if t >= since and text.startswith("became active"):
            if "ports closed" in text:
                return "fast/closed"
            if "crash fast path" in text:
                return "fast/timeout"
            if "no heartbeat request" in text:
                return "loss"
            return "other"
    return "none"


def milestones(lab: Lab, node: str, t0: float) -> str:
    """When the new active's trace saw the reset and changed state (ms after the signal)."""
    rows = [(t, x) for t, x in trace_rows(lab, node) if t >= t0]
    marks = []
    for label, prefix in (("reset", "sync connection reset"), ("active", "redundancy state")):
        t = next((t for t, x in rows if x.startswith(prefix)), None)
        if t is not None:
            marks.append(f"{label} +{(t - t0) * 1000:.1f}")
    return f"; trace: {', '.join(marks)}" if marks else ""


def services(lab: Lab, node: str) -> dict[str, int]:
    data = lab.cli_json(node, "show system internal sysmgr services")
    return {r["name"]: int(r["pid"]) for r in data["TABLE_service"]["ROW_service"] if r["pid"]}


def bind_ports(addrs: list[tuple[str, int]], timeout: float) -> list[socket.socket]:
    """Take the dead node's UDP ports as soon as its processes let go of them."""
    socks = []
    deadline = time.monotonic() + timeout
    for addr in addrs:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        while True:
            try:
                sock.bind(addr)
                break
            except OSError:
                if time.monotonic() > deadline:
                    sock.close()
                    raise
                time.sleep(0.0005)
        socks.append(sock)
    return socks


def first_active_datagram(sock: socket.socket, codec: Codec, until: float) -> float | None:
    sock.settimeout(0.05)
    while time.time() < until:
        try:
            data, _ = sock.recvfrom(65535)
        except TimeoutError:
            continue
        frame = codec.decode(data)
        if not isinstance(frame, Frame):
            continue
        msg = frame.msg
        if isinstance(msg, HeartbeatRequest | Discovery) and msg.state == "active":
            return time.time()
    return None


def node_fault_run(
    lab: Lab, codec: Codec, args: argparse.Namespace, timeout: float
) -> tuple[float, str, str]:
    """SIGKILL or SIGSTOP of the active's process group; (seconds, new active, path)."""
    active = lab.wait_pair()  # a hot pair before every fault
    standby = "secondary" if active == "primary" else "primary"
    dead = lab.nodes[active]
    proc = dead.proc
    assert proc is not None
    blind = args.blind_ports
    sniffer = None if blind else open_sniffer(dead.control[1])
    if sniffer is None and args.fault == "sigkill":
        blind = True
    bound: list[socket.socket] = []
    try:
        if sniffer is not None:
            sniffer.drain()
        t0 = time.time()
        os.killpg(proc.pid, signal.SIGKILL if args.fault == "sigkill" else signal.SIGSTOP)
        until = t0 + timeout
        if blind:
            bound = bind_ports([dead.control, dead.mgmt], 5.0)
            t1 = first_active_datagram(bound[0], codec, until)
        elif sniffer is not None:
            t1 = first_active_frame(sniffer, codec, until)
        else:
            t1 = poll_active(lab, standby, until)
    finally:
        if sniffer is not None:
            sniffer.close()
        for sock in bound:
            sock.close()
    lab.kill_node(active)
    if t1 is None:
        raise RuntimeError(f"{standby} did not become active within {timeout} s")
    path = takeover_path(lab, standby, t0)
    steps = milestones(lab, standby, t0)
    lab.start_node(active)
    return t1 - t0, standby, f"{path}{steps}"


def cfgmgr_run(lab: Lab, timeout: float) -> tuple[float | None, str, str]:
    """SIGKILL of the active's cfgmgr alone: (probe answer time, takeover path, active)."""
    active = lab.wait_pair()
    standby = "secondary" if active == "primary" else "primary"
    pid = services(lab, active)["cfgmgr"]
    t0 = time.time()
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: services(lab, active).get("cfgmgr", pid) != pid, timeout, "cfgmgr to restart")
    after = lab.wait_pair()
    rows = [(t, x) for t, x in trace_rows(lab, standby) if t >= t0 - 0.01]
    probing = next((t for t, x in rows if x.startswith("sync connection reset by")), None)
    alive = next((t for t, x in rows if "the active is alive" in x), None)
    path = takeover_path(lab, standby, t0 - 0.01)
    rtt = alive - probing if probing is not None and alive is not None else None
    return rtt, path, after


def run_node_faults(lab: Lab, codec: Codec, args: argparse.Namespace, loss: float) -> None:
    times: list[float] = []
    paths: dict[str, int] = {}
    for i in range(args.runs):
        dt, new_active, path = node_fault_run(lab, codec, args, loss * 4 + 5)
        times.append(dt)
        kind = path.split(";")[0]
        paths[kind] = paths.get(kind, 0) + 1
        print(
            f"run {i + 1:2d}: {dt * 1000:8.1f} ms  (new active: {new_active}, path: {path})",
            flush=True,
        )
    hb = TIMER_PROFILES[args.timers]["heartbeat_interval_ms"]
    what = "SIGKILL" if args.fault == "sigkill" else "SIGSTOP"
    print(f"\nfailover ({args.timers} timers, hb {hb} ms, loss interval {loss * 1000:.0f} ms),")
    print(f"{len(times)} runs of {what} of the active node's process group:")
    print("  takeover ms:           ", stats([t * 1000 for t in times], ".1f"))
    print("  ratio to loss interval:", stats([t / loss for t in times], ".3f"))
    print(same_run_ratio("median takeover s", statistics.median(times), loss, "loss interval"))
    print("  paths:                 ", ", ".join(f"{k} {v}" for k, v in sorted(paths.items())))


def run_cfgmgr_faults(lab: Lab, args: argparse.Namespace, loss: float) -> None:
    rtts: list[float] = []
    false_takeovers = 0
    last_kill: dict[str, float] = {}
    for i in range(args.runs):
        # sysmgr reloads a node whose service crashed 5 times in 60 s (with a
        # switchover first): at most 4 kills per node and minute here.
        node = lab.wait_pair()
        wait = last_kill.get(node, -1e9) + 15.5 - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        last_kill[node] = time.monotonic()
        rtt, path, active = cfgmgr_run(lab, loss * 4 + 10)
        false_takeovers += path != "none"
        if rtt is not None:
            rtts.append(rtt)
        shown = f"{rtt * 1000:6.2f} ms" if rtt is not None else "   (no probe)"
        print(
            f"run {i + 1:2d}: probe answered in {shown}  takeover: {path}  (active: {active})",
            flush=True,
        )
    print(f"\nSIGKILL of the active's cfgmgr alone ({args.timers} timers), {args.runs} runs:")
    print(f"  takeovers by the standby (false, split-brain): {false_takeovers}")
    if rtts:
        print("  probe answer ms (standby's trace):", stats([t * 1000 for t in rtts], ".2f"))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--timers", choices=sorted(TIMER_PROFILES), default="fast")
    parser.add_argument("--fault", choices=("sigkill", "sigstop", "cfgmgr"), default="sigkill")
    parser.add_argument("--dir", type=Path, help="keep the lab (logs, traces) in this directory")
    parser.add_argument(
        "--blind-ports",
        action="store_true",
        help="sigkill: bind the dead node's control and mgmt ports at once (no port "
        "unreachable for the standby: the probe timeout path, as over L2 or a filter)",
    )
    args = parser.parse_args()
    loss = TIMER_PROFILES[args.timers]["max_loss_interval_ms"] / 1000
    with tempfile.TemporaryDirectory(prefix="openvsm-bench-") as tmp:
        lab = Lab(args.dir or Path(tmp), timers=args.timers, rest=False)
        codec = Codec(lab.domain_id, lab.secret.encode())
        try:
            lab.start()
            if args.fault == "cfgmgr":
                run_cfgmgr_faults(lab, args, loss)
            else:
                run_node_faults(lab, codec, args, loss)
        finally:
            lab.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
