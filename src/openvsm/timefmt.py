"""Display timestamps: the one format shows use for a point in time.

``specs/cli-output.md``: times are local, ``YYYY-Mon-DD HH:MM:SS``
(``2012-Sep-11 18:59:17``). Machine-readable stamps (``timestamp`` fields,
trace files) are ISO 8601 UTC (``openvsm.observe.tracelog``). A leaf module.
"""

from __future__ import annotations

import time

DISPLAY_FORMAT = "%Y-%b-%d %H:%M:%S"


def display_time(t: float) -> str:
    """Wall-clock seconds -> local ``YYYY-Mon-DD HH:MM:SS``."""
    return time.strftime(DISPLAY_FORMAT, time.localtime(t))
