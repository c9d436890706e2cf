"""False-failover benchmark: the fast timer profile under CPU saturation.

The pair runs with the fast profile (100 ms heartbeats, 600 ms loss interval)
behind the fault proxy, with VEM agents, for ``--minutes`` (default 10) while
both cores are saturated by CPU hog processes (one per core) and a config
writer commits CLI changes as fast as it can. It reports:

- unnecessary role changes: every "became active" and every reload in the
  redundancy traces of both nodes after the start (goal: 0), and whether the
  active at the end is the one at the start;
- the heartbeat send-jitter histogram of hamgr, measured on the wire, not
  reported by hamgr: a UDP tap owned by this benchmark sits between the
  fault proxy and the secondary on control (the proxy's control link points
  at the tap, the secondary's control peer is the tap). It timestamps every
  datagram in either direction (``time.monotonic_ns`` at receive), decodes
  it (domain secret), keeps the ``HeartbeatRequest`` ones (sent by the
  active, whichever node it is) and relays everything unchanged both ways
  (the secondary's sync TCP towards the primary on the same port too). Jitter = interval between two
  consecutive requests minus the nominal interval. The tap runs under the
  same CPU load, so its own scheduling delay is included: the figures are an
  upper bound of hamgr's.

    .venv/bin/python bench/false_failover.py                 # 10 minutes
    .venv/bin/python bench/false_failover.py --minutes 1 --hogs 2
    .venv/bin/python bench/false_failover.py --minutes 1 --scrape-hz 1   # + /metrics scrapes

The cost of observability (issue 14): ``--scrape-hz F`` scrapes both nodes'
``/metrics`` F times a second during the run (a Prometheus server at a short
interval); the summary then gives the scrape latency, and in every run the
CPU seconds hamgr and cfgmgr of each node used during the window (from
``/proc/PID/stat``), so a run without and one with scraping compare
heartbeat jitter and CPU (``--no-writer`` leaves out the config writer, whose
load otherwise dominates cfgmgr's CPU).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from openvsm.lab.benchfmt import same_run_ratio
from openvsm.lab.chaos import Writer
from openvsm.lab.common import free_port, ipc_call
from openvsm.lab.lab import TIMER_PROFILES, Lab
from openvsm.wire.codec import Codec, Frame
from openvsm.wire.messages import HeartbeatRequest

SAME_RUN_BASELINE = "the median heartbeat interval the tap saw under the same load"

BUCKETS_MS = (1, 2, 5, 10, 20, 50, 100, 200, 600)
CLK_TCK = os.sysconf("SC_CLK_TCK")


def service_pids(lab: Lab) -> dict[str, int]:
    """``node/service`` -> pid, from each node's sysmgr."""
    out = {}
    for name, node in lab.nodes.items():
        table = ipc_call(node.rundir / "sysmgr.sock", "services")
        for row in table["TABLE_service"]["ROW_service"]:
            if row.get("pid"):
                out[f"{name}/{row['name']}"] = int(row["pid"])
    return out


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


class Scraper(threading.Thread):
    """GET /metrics of every node ``hz`` times a second (Basic auth as the lab's admin)."""

    def __init__(self, lab: Lab, hz: float) -> None:
        super().__init__(daemon=True)
        self.urls = [
            f"http://{n.rest[0]}:{n.rest[1]}/metrics" for n in lab.nodes.values() if n.rest
        ]
        self.auth = ("admin", lab.password)
        self.period = 1.0 / hz
        self.stopped = threading.Event()
        self.latencies_ms: list[float] = []
        self.errors = 0
        self.bytes = 0

    def run(self) -> None:
        import requests

        with requests.Session() as session:
            session.auth = self.auth
            next_at = time.monotonic()
            while not self.stopped.is_set():
                for url in self.urls:
                    t0 = time.monotonic()
                    try:
                        r = session.get(url, timeout=5)
                        ok = r.status_code == 200
                        self.bytes += len(r.content)
                    except requests.RequestException:
                        ok = False
                    if ok:
                        self.latencies_ms.append((time.monotonic() - t0) * 1000)
                    else:
                        self.errors += 1
                next_at += self.period
                self.stopped.wait(max(0.0, next_at - time.monotonic()))


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)


class Tap:
    """UDP relay in front of the proxy for the primary's control heartbeats."""

    def __init__(self, codec: Codec, secondary: tuple[str, int], proxy: tuple[str, int]) -> None:
        self.codec = codec
        self.secondary = secondary
        self.forward_to = proxy  # where the secondary's own traffic goes
        port = free_port()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", port))
        self.sock.settimeout(0.5)
        self.addr: tuple[str, int] = self.sock.getsockname()
        # The control peer address also carries the sync stream (TCP, same port).
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", port))
        self.listener.listen(8)
        self.listener.settimeout(0.5)
        self.requests: list[int] = []  # monotonic ns of each HeartbeatRequest
        self.other = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tap", daemon=True)

    def start(self) -> None:
        self._thread.start()
        threading.Thread(target=self._accept, name="tap-tcp", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()
        self.listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.forward_to, timeout=2)
            except OSError:
                conn.close()
                continue
            upstream.settimeout(None)
            for a, b in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=_pipe, args=(a, b), daemon=True).start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, src = self.sock.recvfrom(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            now = time.monotonic_ns()
            # Only the active sends requests: whichever node it is, its control
            # requests cross the tap (primary -> secondary or back).
            self.sock.sendto(data, self.forward_to if src == self.secondary else self.secondary)
            frame = self.codec.decode(data)
            if isinstance(frame, Frame) and isinstance(frame.msg, HeartbeatRequest):
                self.requests.append(now)
            else:
                self.other += 1


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()


def histogram(jitter_ms: list[float]) -> dict[str, int]:
    hist: dict[str, int] = {}
    lo = 0
    for hi in BUCKETS_MS:
        hist[f"{lo}-{hi} ms"] = sum(lo <= abs(j) < hi for j in jitter_ms)
        lo = hi
    hist[f">={lo} ms"] = sum(abs(j) >= lo for j in jitter_ms)
    return hist


def trace_events(node_dir: Path, since_wall: float) -> list[str]:
    events = []
    path = node_dir / "data" / "redundancy-trace.log"
    for line in path.read_text().splitlines():
        t, text = json.loads(line)
        if float(t) >= since_wall:
            events.append(str(text))
    return events


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--hogs", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--vems", type=int, default=2)
    parser.add_argument("--scrape-hz", type=float, default=0.0, help="GET /metrics rate")
    parser.add_argument(
        "--no-writer", action="store_true", help="no config writer (isolates the scrape cost)"
    )
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="openvsm-ff-"))
    lab = Lab(root / "lab", timers="fast", proxy=True, rest=True)
    codec = Codec(lab.domain_id, lab.secret.encode())
    secondary = lab.nodes["secondary"]
    tap = Tap(codec, secondary.control, secondary.peer_control)
    # The secondary's control peer is the tap (which relays to the proxy) ...
    text = secondary.config.read_text()
    peer = f"{secondary.peer_control[0]}:{secondary.peer_control[1]}"
    text = re.sub(
        r'(\[interfaces\.control\]\nlocal = "[^"]+"\npeer = )"[^"]+"',
        lambda m: f'{m.group(1)}"{tap.addr[0]}:{tap.addr[1]}"',
        text,
    )
    assert peer not in text.split("[interfaces.mgmt]")[0], "tap not installed"
    secondary.config.write_text(text)
    # ... and the proxy's control UDP link ends at the tap instead of the secondary.
    links = lab.proxy_links()
    for link in links["udp"]:
        if link["name"] == "control":
            link["b"] = list(tap.addr)
    setattr(lab, "proxy_links", lambda: links)  # noqa: B010
    tap.start()
    hogs: list[subprocess.Popen[bytes]] = []
    writer = Writer(lab, interval=0.0)
    scraper = Scraper(lab, args.scrape_hz) if args.scrape_hz > 0 else None
    try:
        active = lab.start()
        lab.start_vems(args.vems)
        print(f"pair up, {active} active; {args.hogs} CPU hogs + writer for {args.minutes} min")
        start_wall = time.time()
        epoch0 = lab.status(active) or {}
        for _ in range(args.hogs):
            hogs.append(subprocess.Popen([sys.executable, "-c", "while True: pass"]))
        writer.target = active
        if not args.no_writer:
            writer.start()
        if scraper is not None:
            scraper.start()
        pids = service_pids(lab)
        cpu0 = {k: cpu_seconds(pid) for k, pid in pids.items()}
        n0 = len(tap.requests)
        t0 = time.monotonic()
        time.sleep(args.minutes * 60)
        window = time.monotonic() - t0
        cpu = {k: round(cpu_seconds(pid) - cpu0[k], 2) for k, pid in pids.items()}
        writer.stop()
        if scraper is not None:
            scraper.stopped.set()
            scraper.join(10)
        sent = tap.requests[n0:]
        for hog in hogs:
            hog.kill()
            hog.wait()
        hogs.clear()
        end_active = lab.active()
        events = {n: trace_events(lab.nodes[n].dir, start_wall) for n in lab.nodes}
        role_changes = [
            f"{n}: {e}"
            for n, evs in events.items()
            for e in evs
            if "became active" in e or e.startswith("reload")
        ]
        nominal_ms = TIMER_PROFILES["fast"]["heartbeat_interval_ms"]
        intervals = [(b - a) / 1e6 for a, b in itertools.pairwise(sent)]
        jitter = [iv - nominal_ms for iv in intervals]
        ops = writer.snapshot()
        summary = {
            "minutes": args.minutes,
            "hogs": args.hogs,
            "writes_acked": sum(o.outcome.value == "ok" for o in ops),
            "writes_total": len(ops),
            "unnecessary_role_changes": len(role_changes),
            "role_change_events": role_changes,
            "active_start": active,
            "active_end": end_active,
            "epoch_start": epoch0.get("epoch"),
            "heartbeat_requests": len(sent),
            "interval_ms": {
                "min": round(min(intervals), 2) if intervals else None,
                "max": round(max(intervals), 2) if intervals else None,
            },
            "jitter_histogram": histogram(jitter),
            "jitter_ms": {
                "p50": percentile([abs(j) for j in jitter], 0.5),
                "p99": percentile([abs(j) for j in jitter], 0.99),
                "max": round(max(abs(j) for j in jitter), 2) if jitter else None,
            },
            "cpu_seconds": {k: v for k, v in sorted(cpu.items()) if "vemmgr" not in k},
            "cpu_percent": {
                k: round(100 * v / window, 2) for k, v in sorted(cpu.items()) if "vemmgr" not in k
            },
            "scrape_hz": args.scrape_hz,
        }
        if scraper is not None:
            summary["scrapes"] = {
                "ok": len(scraper.latencies_ms),
                "errors": scraper.errors,
                "latency_ms_p50": percentile(scraper.latencies_ms, 0.5),
                "latency_ms_p99": percentile(scraper.latencies_ms, 0.99),
                "bytes_per_scrape": scraper.bytes // max(1, len(scraper.latencies_ms)),
            }
        print(json.dumps(summary, indent=2))
        if intervals:
            print(
                same_run_ratio(
                    "max heartbeat interval ms",
                    max(intervals),
                    statistics.median(intervals),
                    "median",
                )
            )
        return 0 if not role_changes else 1
    finally:
        writer.stop()
        if scraper is not None:
            scraper.stopped.set()
        for hog in hogs:
            hog.kill()
            hog.wait()
        lab.stop()
        tap.stop()


if __name__ == "__main__":
    sys.exit(main())
