"""openvsm.vem."""
