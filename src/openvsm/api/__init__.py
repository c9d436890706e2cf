"""openvsm.api."""
