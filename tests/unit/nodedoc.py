"""The VSM node document the unit tests build configurations from (read only:
tests copy it before changing anything)."""

from __future__ import annotations

from typing import Any

NODE_DOC: dict[str, Any] = {
    "node": {
        "domain_id": 100,
        "role": "primary",
        "secret": "lab-secret-123",
        "data_dir": "data",
        "run_dir": "run",
    },
    "interfaces": {
        "control": {"local": "127.0.0.1:17001", "peer": "127.0.0.1:17101"},
        "mgmt": {"local": "127.0.0.1:17002", "peer": "127.0.0.1:17102"},
    },
    "vem": {"listen": "127.0.0.1:17003"},
}
