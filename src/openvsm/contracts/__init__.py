"""Typed contracts of the node's boundaries: one msgspec Struct per IPC request,
reply and topic (one module per service API) and per store object kind.

``docs/CONTRACTS.md`` is generated from them (``python -m openvsm.contracts.doc``).
"""
