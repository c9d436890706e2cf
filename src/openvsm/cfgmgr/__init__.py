"""cfgmgr: configuration store owner, replication, CLI server and REST API."""
