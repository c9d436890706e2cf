"""openvsm.cli."""
