"""openvsm.sync."""
