"""Where a running ``medsentry repo serve`` can be reached, for the other commands of
the same work directory (``device provision`` reads it as it reads the broker's
``broker/address.json``).

``<workdir>/release/serve.json``: ``{"url", "pid", "ca"}`` written when the server
listens and removed when it stops; a record whose process is gone is ignored.
The trusted root a device is provisioned with is the repository's newest
``N.root.json`` (devices follow every later rotation from it).
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from .layout import Layout

_ROOT = re.compile(r"^(\d+)\.root\.json$")


@dataclass(frozen=True)
class Served:
    url: str  # base URL: metadata/ and targets/ below it
    pid: int
    ca: Path | None = None  # the self-signed certificate of `repo serve --tls`

    @property
    def metadata_url(self) -> str:
        return self.url.rstrip("/") + "/metadata"

    @property
    def targets_url(self) -> str:
        return self.url.rstrip("/") + "/targets"


def record_path(workdir: str | Path) -> Path:
    return Layout.of(workdir).workdir / "release" / "serve.json"


def write_record(workdir: str | Path, url: str, ca: Path | None = None) -> Path:
    path = record_path(workdir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"url": url, "pid": os.getpid(), "ca": str(ca.resolve()) if ca else None}) + "\n")
    os.replace(tmp, path)
    return path


def remove_record(workdir: str | Path) -> None:
    path = record_path(workdir)
    try:
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError, AttributeError):
        pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def served(workdir: str | Path) -> Served | None:
    """The running `repo serve` of this work dir, or None (none, or it died)."""
    try:
        d = json.loads(record_path(workdir).read_text())
        rec = Served(str(d["url"]), int(d["pid"]), Path(d["ca"]) if d.get("ca") else None)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return rec if rec.pid > 0 and _alive(rec.pid) else None


def newest_root(workdir: str | Path) -> Path | None:
    """The repository's newest ``N.root.json`` (None: no repository here)."""
    md = Layout.of(workdir).metadata
    try:
        found = [(int(m.group(1)), p) for p in md.iterdir() if (m := _ROOT.match(p.name))]
    except OSError:
        return None
    return max(found)[1] if found else None
