"""Health of a staged rollout, from the update reports in ``fleet.db``.

Which devices are in a stage is decided the way the devices decide it: the
device function :func:`updater.install.policy.rollout_bucket` (the same code
runs on the boards). What each device did with the release comes only from its
own update reports (its newest report naming the version), as in ``fleet
status``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from host_tools.collector.dbconn import fleet_db

from updater.install.policy import rollout_bucket

from .reader import FleetReader, ReaderError
from .status import pki_records, release_state


@dataclass
class StageHealth:
    model: str
    version: str
    percent: int
    #: devices of the model (PKI records, else fleet.db) whose bucket is below `percent`
    in_stage: list[str] = field(default_factory=list)
    #: device -> newest state its reports give for this version (confirmed, rolled_back, ...)
    states: dict[str, str] = field(default_factory=dict)
    fleet_db: bool = True

    def _with(self, state: str) -> list[str]:
        return sorted(d for d, s in self.states.items() if s == state)

    @property
    def confirmed(self) -> list[str]:
        return self._with("confirmed")

    @property
    def rolled_back(self) -> list[str]:
        return self._with("rolled_back")

    @property
    def rollback_rate(self) -> float:
        """Rolled back / (confirmed + rolled back); 0 before any device finished."""
        done = len(self.confirmed) + len(self.rolled_back)
        return len(self.rolled_back) / done if done else 0.0

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(confirmed=self.confirmed, rolled_back=self.rolled_back, rollback_rate=self.rollback_rate)
        return d


def stage_health(workdir: str | Path, model: str, version: str, manifest_sha256: str, percent: int
                 ) -> StageHealth:
    workdir = Path(workdir)
    h = StageHealth(model, version, percent)
    pki = {dev for dev, rec in pki_records(workdir).items() if rec.model == model}
    devices = set(pki)
    try:
        reader = FleetReader(fleet_db(workdir))
    except ReaderError:
        h.fleet_db = False
        reader = None
    if reader is not None:
        try:
            for row in reader.devices():
                dev = row["device_id"]
                if dev == "?":
                    continue
                state = None
                for r in reader.updates(dev):
                    v, s = release_state(r)
                    if v == version:
                        state = s
                if state is not None and (dev in pki or not pki):
                    h.states[dev] = state
                    devices.add(dev)
        finally:
            reader.close()
    h.in_stage = sorted(d for d in devices if rollout_bucket(d, manifest_sha256) < percent)
    return h


def decide(h: StageHealth, halt_on_rollback: float, min_confirmed: int) -> tuple[str, str]:
    """("halt" | "advance" | "wait", why) for the current stage."""
    rb = h.rolled_back
    if rb and h.rollback_rate > halt_on_rollback:
        return "halt", (f"rollback rate {h.rollback_rate:.0%} ({len(rb)} of "
                        f"{len(rb) + len(h.confirmed)}: {', '.join(rb)}) is above {halt_on_rollback:.0%}")
    need = min(min_confirmed, len(h.in_stage))
    got = len(h.confirmed)
    if got >= need:
        return "advance", (f"{got} device(s) confirmed {h.version}, {need} needed "
                           f"({len(h.in_stage)} in the {h.percent} % stage); rollback rate {h.rollback_rate:.0%}")
    if not h.fleet_db:
        return "wait", "no fleet database yet (run `medsentry collector`)"
    return "wait", (f"{got} device(s) confirmed {h.version}, {need} needed "
                    f"({len(h.in_stage)} in the {h.percent} % stage)")
