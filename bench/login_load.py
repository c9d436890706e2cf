"""Login load: configuration commit latency while clients hammer wrong passwords.

Starts a lab pair (fast timers, REST on), measures the latency of CLI
configuration commits on the active (each acknowledged after the local
commit and the standby's ack) while quiet, then again while ``--clients``
threads send REST requests with wrong passwords as fast as they can
(keep-alive HTTPS sessions, trusting the lab's pair certificate). The
password checks run in cfgmgr's bounded pool and the failure limit answers
most of them 429 without work; the goal is a loaded median within 2x of the
quiet one (issue 12 point 4).

    .venv/bin/python bench/login_load.py
    .venv/bin/python bench/login_load.py --clients 50 --commits 100
"""

from __future__ import annotations

import argparse
import collections
import statistics
import tempfile
import threading
import time
from pathlib import Path

import requests

from openvsm.lab.benchfmt import same_run_ratio
from openvsm.lab.lab import Lab

SAME_RUN_BASELINE = "the median of CLI commits with no login load, same pair, same run"

GOAL_RATIO = 2.0


def commits(lab: Lab, active: str, n: int, first_vlan: int) -> list[float]:
    lat = []
    for i in range(n):
        t0 = time.perf_counter()
        res = lab.cli(active, f"configure terminal ; vlan {first_vlan + i} ; end", timeout=30)
        lat.append((time.perf_counter() - t0) * 1000)
        assert not res["error"], res
    return lat


def hammer(url: str, ca: str, stop: threading.Event, codes: collections.Counter[int]) -> None:
    with requests.Session() as s:
        i = 0
        while not stop.is_set():
            i += 1
            try:
                r = s.get(url, auth=("admin", f"wrong-{i}"), verify=ca, timeout=10)
                codes[r.status_code] += 1
            except requests.RequestException as exc:
                if not codes[0]:
                    print(f"first client error: {exc}")
                codes[0] += 1


def summary(lat: list[float]) -> str:
    q = statistics.quantiles(lat, n=20)
    return f"median {statistics.median(lat):.1f} ms, p95 {q[18]:.1f} ms"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--commits", type=int, default=60)
    ap.add_argument("--plain", action="store_true", help="hammer the plain-HTTP listener")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="openvsm-login-") as tmp:
        lab = Lab(Path(tmp), timers="fast", rest=True)
        try:
            active = lab.start()
            node = lab.nodes[active]
            assert node.rest_url is not None
            base = node.rest_plain_url if args.plain else node.rest_url
            assert base is not None
            url = f"{base}/api/n1k/network-segment"
            ca = str(lab.credentials.cert)
            commits(lab, active, 10, 100)  # warm up
            quiet = commits(lab, active, args.commits, 200)
            stop = threading.Event()
            codes: collections.Counter[int] = collections.Counter()
            threads = [
                threading.Thread(target=hammer, args=(url, ca, stop, codes), daemon=True)
                for _ in range(args.clients)
            ]
            for t in threads:
                t.start()
            time.sleep(2.0)  # let the hammering reach its pace
            t0 = time.perf_counter()
            loaded = commits(lab, active, args.commits, 1200)
            elapsed = time.perf_counter() - t0
            stop.set()
            for t in threads:
                t.join(15)
            ratio = statistics.median(loaded) / statistics.median(quiet)
            total = sum(codes.values())
            print(f"quiet : {summary(quiet)} ({args.commits} commits)")
            print(f"loaded: {summary(loaded)} with {args.clients} wrong-password clients")
            print(
                f"login attempts: {total} ({total / (elapsed + 2):.0f}/s): "
                + ", ".join(f"{c}: {n}" for c, n in sorted(codes.items()))
            )
            ok = ratio <= GOAL_RATIO
            verdict = "OK" if ok else "MISSED"
            print(f"ratio loaded/quiet median: {ratio:.2f} (goal <= {GOAL_RATIO}) {verdict}")
            print(
                same_run_ratio(
                    "commit median ms, loaded",
                    statistics.median(loaded),
                    statistics.median(quiet),
                    "quiet",
                )
            )
            return 0 if ok else 1
        finally:
            lab.stop()


if __name__ == "__main__":
    raise SystemExit(main())
