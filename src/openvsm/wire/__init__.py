"""openvsm.wire."""
