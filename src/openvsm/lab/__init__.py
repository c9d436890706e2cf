"""openvsm.lab."""
