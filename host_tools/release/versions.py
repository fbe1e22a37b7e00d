"""Release versions: ``MAJOR.MINOR.PATCH`` integers, compared numerically."""
from __future__ import annotations

import re

from .errors import ConfigError

_RE = re.compile(r"^(0|[1-9]\d{0,5})\.(0|[1-9]\d{0,5})\.(0|[1-9]\d{0,5})$")


def parse_version(text: str) -> tuple[int, int, int]:
    m = _RE.match(text or "")
    if not m:
        raise ConfigError(f"not a version: {text!r} (use MAJOR.MINOR.PATCH, e.g. 1.2.0)")
    return (int(m.group(1)), int(m.group(2)), int(m.group(3)))


def check_version(text: str) -> str:
    parse_version(text)
    return text
