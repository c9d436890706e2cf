"""Observability of a node (issue 14, docs/observability.md).

- ``gaps``: heartbeat-gap histograms kept by hamgr (sans-IO, cheap).
- ``export``: the typed snapshot hamgr answers on its ``metrics`` IPC op.
- ``tracelog``: the redundancy trace as JSON lines in the node's log
  directory, rotated by size.
- ``metrics``: cfgmgr's ``/metrics`` (Prometheus text): pulls hamgr, vemmgr
  and sysmgr over IPC at scrape time, plus cfgmgr's own REST/commit counters.
- ``status``: the live ``/status`` page and its server-sent events feed.
- ``notify``: keepalived-style notify hooks run on settled transitions.
- ``vem``: the VEM agent's own ``/metrics`` listener.

Nothing here runs at import; every listener and task is started and
stopped by its owner.
"""
