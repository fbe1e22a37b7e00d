"""A real fleet database fed by real sealed records (real PKI keys, AES-CCM, Ingestor)."""
from __future__ import annotations

import time
from pathlib import Path

import cbor2

from host_tools.collector import FleetDB, Ingestor
from host_tools.collector.cose import seal
from host_tools.pki import FleetPKI



class Fleet:
    """Devices sealing records into one collector database under ``workdir``."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.pki = FleetPKI(workdir)
        self.pki.init()
        self.db = FleetDB(workdir / "fleet.db")
        self.ing = Ingestor(self.pki, self.db)
        self.seq: dict[str, int] = {}
        #: receive time of the first record (a little after the keys were issued)
        self.t0 = time.time()

    def issue(self, dev: str, model: str, days: float | None = None) -> None:
        self.pki.issue(dev, model, days=days)

    def _send(self, dev: str, kind: str, rec: dict, now: float) -> str:
        seq = self.seq[dev] = self.seq.get(dev, 0) + 1
        tk = self.pki.device(dev).active_key()
        topic = f"medsentry/{dev}/{kind}"
        rec = dict(rec, seq=seq, t=now)
        payload = seal(cbor2.dumps(rec), key=tk.key, base_iv=tk.base_iv, kid=tk.kid, seq=seq, topic=topic)
        return self.ing.handle(topic, payload, now=now).kind

    def vitals(self, dev: str, now: float, **fields: object) -> str:
        return self._send(dev, "telemetry", dict({"hr": 72, "spo2": 98, "temp": 36.8}, **fields), now)

    def status(self, dev: str, now: float, state: str = "online", fw: str | None = None, **extra: object) -> str:
        rec: dict = {"state": state, **extra}
        if fw is not None:
            rec["fw"] = fw
        return self._send(dev, "status", rec, now)

    def update(self, dev: str, now: float, fw: str, **report: object) -> str:
        return self.status(dev, now, "update", fw, update=report)

    def last_will(self, dev: str, now: float) -> str:
        return self.ing.handle(f"medsentry/{dev}/status", cbor2.dumps({"state": "offline"}), now=now).kind

    def close(self) -> None:
        self.db.close()
