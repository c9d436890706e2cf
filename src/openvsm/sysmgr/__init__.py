"""openvsm.sysmgr."""
