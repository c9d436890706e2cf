"""openvsm.store."""
