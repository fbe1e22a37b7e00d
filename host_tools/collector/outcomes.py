"""What the collector decided about one message (SEALING.md section 6).

Its own module so that ``db`` (summaries) and ``ingest`` (classification) both
use it without importing each other.
"""
from __future__ import annotations

from dataclasses import dataclass, field

OUTCOMES = ("accepted", "duplicate", "replayed", "forged", "malformed", "unknown_kid",
            "wrong_device", "retired_key", "implausible_seq", "status_unsealed", "ignored")
REJECTIONS = ("replayed", "forged", "malformed", "unknown_kid", "wrong_device", "retired_key",
              "implausible_seq")


# Not frozen: a frozen dataclass sets each field through object.__setattr__ (0.86
# against 0.35 us here, once per message); nothing changes an Outcome once made.
@dataclass(slots=True)
class Outcome:
    kind: str
    device_id: str
    seq: int | None = None
    detail: str = ""
    #: The MQTT topic and, for an accepted record, its decrypted plaintext (CBOR):
    #: what ``collector --follow`` prints. Not part of the decision.
    topic: str = field(default="", compare=False, repr=False)
    plaintext: bytes | None = field(default=None, compare=False, repr=False)

    @property
    def rejected(self) -> bool:
        return self.kind in REJECTIONS
