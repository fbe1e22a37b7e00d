"""Plain-text tables (stay readable when the output is a file or a pipe)."""
from __future__ import annotations

from typing import Any, Sequence

from .status import NOT_REPORTED


def cell(v: Any) -> str:
    if v is None:
        return "-"
    if v == NOT_REPORTED:
        return "n/r"
    if isinstance(v, dict):
        return " ".join(f"{k}={cell(x)}" for k, x in v.items() if x is not None)
    return str(v)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[cell(v) for v in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    return "\n".join(lines) + "\n"


DEVICE_COLUMNS = (
    ("device", "device_id"), ("model", "model"), ("firmware", "firmware"), ("slot", "slot"),
    ("link", "link"), ("last seen (UTC)", "last_seen"), ("updates", "updates"), ("update", "update_step"),
    ("version", "update_version"), ("reason", "update_reason"), ("last rollback", "last_rollback"),
    ("cert until", "cert_not_after"), ("integrity", "integrity"), ("event chain", "event_chain"),
    ("lockouts", "console_lockouts"), ("segment", "segment"), ("admission", "admission"),
    ("why", "admission_reason"),
)
RELEASE_TABLE = ("model", "version", "running", "pending", "downloading", "installed", "confirmed",
                 "rolled_back", "deferred", "rejected", "rollout")


def status_text(doc: dict[str, Any]) -> str:
    devs = [[d[k] for _, k in DEVICE_COLUMNS] for d in doc["devices"]]
    rels = [[r[k] for k in RELEASE_TABLE] for r in doc["releases"]]
    out = f"Fleet status at {doc['generated_at']} ({len(devs)} devices; n/r = not reported)\n\n"
    out += table([h for h, _ in DEVICE_COLUMNS], devs) if devs else "no devices seen yet\n"
    out += ("\nReleases (devices per state, from update reports; pending = offered by the repository "
            "now, not started)\n\n")
    out += table(RELEASE_TABLE, rels) if rels else "no update reports yet\n"
    return out
