"""openvsm.redundancy."""
