#!/usr/bin/env bash
# Installs the Debian packages that the data-plane (OVS/netns) tests and the
# benchmarks use (bench/dataplane.py needs iperf3 and ping), promtool (package
# prometheus: the alert rules' check and unit tests) and chromium +
# chromium-driver (the /status page's headless-browser test).
# Guarded: a non-root run, or a machine without apt-get, skips cleanly and
# those tests then skip with a reason.
set -u
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "system-deps: not root or no apt-get; OVS/netns tests will be skipped"
  exit 0
fi
need=()
command -v ovs-vsctl >/dev/null 2>&1 || need+=(openvswitch-switch)
command -v nft >/dev/null 2>&1 || need+=(nftables)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v iperf3 >/dev/null 2>&1 || need+=(iperf3)
command -v ping >/dev/null 2>&1 || need+=(iputils-ping)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
echo "system-deps: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null 2>&1 || true
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null 2>&1 \
  || echo "system-deps: apt-get install failed; OVS/netns tests will be skipped"
# Debian's packages may start their own daemons; our tests run private instances.
if command -v systemctl >/dev/null 2>&1; then
  systemctl stop openvswitch-switch >/dev/null 2>&1 || true
  systemctl stop prometheus >/dev/null 2>&1 || true
fi
exit 0
