"""openvsm: an open distributed virtual switch (VSM pair + VEMs) for KVM/OpenStack."""

__version__ = "0.1.0"
