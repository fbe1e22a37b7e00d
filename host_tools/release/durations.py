"""Durations such as ``1d``, ``12h``, ``90d``, ``1y`` (expiry settings)."""
from __future__ import annotations

import re
from datetime import timedelta

from .errors import ConfigError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}
_RE = re.compile(r"^\s*(\d+)\s*([smhdwy])\s*$")


def parse_duration(text: str) -> timedelta:
    """'1d' -> 1 day. Units: s, m, h, d, w, y (365 days). Must be positive."""
    m = _RE.match(str(text).lower())
    if not m:
        raise ConfigError(f"not a duration: {text!r} (use e.g. 12h, 1d, 7d, 90d, 1y)")
    seconds = int(m.group(1)) * _UNITS[m.group(2)]
    if seconds <= 0:
        raise ConfigError(f"duration must be positive: {text!r}")
    return timedelta(seconds=seconds)
