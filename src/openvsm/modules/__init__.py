"""openvsm.modules."""
