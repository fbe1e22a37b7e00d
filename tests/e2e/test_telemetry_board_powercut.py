"""Power cut on a provisioned board while sealed records wait in its flash queue
(broker away): after the reboot everything queued is delivered, the reserved but
unused sequence numbers are declared (skip), nothing is lost and no nonce is ever
reused - checked by the collector AND by an independent subscriber that sees the
raw sealed messages. The same board has an update server configured (a real TUF
repository with nothing published for it): its update agent's reports reach the
collector as sealed status records and show in `medsentry telemetry export`/stats.
"""
from __future__ import annotations

import json
import threading
import time
from collections import defaultdict

import cbor2
from click.testing import CliRunner

from host_tools.cli.main import cli
from host_tools.collector import tls_client
from host_tools.release.quickstart import DemoPassphrases, ensure_models
from host_tools.release.serve import RepositoryServer
from tests.e2e.telemetry_board_fixtures import board_fleet, sequence_report

DEVICE = "mon-p1"
MODEL = "monitor-v1"
HEAP = "384k"


class RawSink:
    """Independent subscriber (second collector identity, own persistent session)."""

    def __init__(self, identity, host, port):
        self.msgs: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()
        self.sub = threading.Event()
        c = tls_client(identity, "raw-sink", clean_session=False)
        c.reconnect_delay_set(min_delay=1, max_delay=1)
        c.on_connect = lambda cl, u, fl, rc, p=None: cl.subscribe([("medsentry/+/telemetry", 1),
                                                                    ("medsentry/+/status", 1)])
        c.on_subscribe = lambda *a: self.sub.set()
        c.on_message = self._on_message
        c.connect(host, port, keepalive=10)
        c.loop_start()
        self.client = c
        assert self.sub.wait(10)

    def _on_message(self, c, u, msg):
        with self.lock:
            self.msgs.append((msg.topic, bytes(msg.payload)))

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def kid_seq(payload: bytes) -> tuple[bytes, int] | None:
    if payload[:1] != b"\xd0":
        return None  # the unsealed last will / retain clear
    msg = cbor2.loads(payload)
    _, unprot, _ = msg.value
    return unprot[4], int.from_bytes(unprot[6], "big")


def test_power_cut_with_queued_records_loses_nothing_reuses_no_nonce_and_reports_updates(tmp_path):
    release = tmp_path / "release"
    root = ensure_models(release, DemoPassphrases("tel-board"), (MODEL,))
    with board_fleet(tmp_path, [(DEVICE, MODEL)]) as f, RepositoryServer(release / "repository") as repo:
        sink = RawSink(f.pki.client_identity("collector-b"), f.broker.host, f.broker.port)
        try:
            # Telemetry + the update agent's TUF client: ~190 KB of .mpy code on
            # the heap; a TUF refresh beside a live TLS session needs ~300 KiB.
            port = f.start_board(DEVICE, MODEL, heap=HEAP)
            cfg = {"telemetry": {"period_ms": 200, "seq_block": 16},
                   "update": {"metadata_url": repo.url + "/metadata", "targets_url": repo.url + "/targets",
                              "check_every_s": 3}}
            f.provision(DEVICE, port, config=cfg, tuf_root=root.read_bytes())
            f.wait_stored(DEVICE, 10, 30)

            # broker away: records pile up in the flash queue
            f.broker.stop()
            f.wait_telemetry(DEVICE, lambda t: not t.get("connected") and t.get("queued", 0) >= 15, 20,
                             "records queued while offline")
            boots = f.boards.status(DEVICE)["boots"]
            # power cut at the 3rd flash write from now: mid-append or mid-reservation
            f.boards.power_cut(DEVICE, at_write=3)
            st = f.boards.wait_for(DEVICE, lambda s: s.get("boots", 0) > boots and
                                   ((s.get("device") or {}).get("telemetry") or {}).get("sampled", 0) >= 5,
                                   30, "reboot after the power cut")
            assert st["last_reset_reason"] == "power_cut"
            queued_after = st["device"]["telemetry"]["queued"]
            assert queued_after >= 15  # the backlog survived the cut

            f.broker.start()
            t = f.wait_telemetry(DEVICE, lambda t: t.get("connected") and t.get("queued", 99) <= 2, 40,
                                 "backlog sent")
            sent_upto = t["next_seq"] - 1 - t["queued"]  # every record the board no longer holds
            deadline = time.monotonic() + 20
            while True:  # wait until the collector stored them (not a fixed sleep)
                f.collector.flush()
                rep = sequence_report(f.db, DEVICE)
                if rep["arrival"] and max(rep["arrival"]) >= sent_upto or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            assert rep["missing"] == [] and f.db.lost(DEVICE) == 0, rep
            # Numbers reserved before the cut but never used are declared "skip" by the
            # first record after the reboot (none when the cut hit the reservation itself).
            covered = set(rep["arrival"])
            for a, b in rep["skipped"]:
                covered |= set(range(a, b + 1))
            assert covered == set(range(1, max(rep["arrival"]) + 1))
            assert len(rep["arrival"]) == len(set(rep["arrival"]))  # exactly once
            c = rep["counters"]
            for bad in ("replayed", "forged", "malformed", "unknown_kid", "wrong_device"):
                assert c.get(bad, 0) == 0, c

            # independent view of the raw sealed messages: no (kid, seq) with two ciphertexts
            want = set(rep["arrival"])
            sink_deadline = time.monotonic() + 10
            while time.monotonic() < sink_deadline:
                with sink.lock:
                    seen = {kid_seq(p)[1] for _, p in sink.msgs if kid_seq(p)}
                if want <= seen:
                    break
                time.sleep(0.2)
            assert want <= seen, f"raw subscriber missed {sorted(want - seen)[:20]}"
            by_nonce: dict[tuple[bytes, int], set[bytes]] = defaultdict(set)
            with sink.lock:
                for topic, payload in sink.msgs:
                    ks = kid_seq(payload)
                    if ks:
                        by_nonce[ks].add(payload)
            assert by_nonce, "the raw subscriber saw sealed messages"
            reused = {k: len(v) for k, v in by_nonce.items() if len(v) > 1}
            assert not reused, f"nonce reuse: {reused}"

            # a monitor has no pump: its records carry none
            vit = f.db.vitals(DEVICE)
            assert vit and all(r["pump_state"] is None and r["hr"] for r in vit)

            # update agent reports arrived sealed: checking -> up_to_date (nothing published)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and "up_to_date" not in {u["step"] for u in f.db.updates(DEVICE)}:
                time.sleep(0.2)
            ups = f.db.updates(DEVICE)
            steps = [u["step"] for u in ups]
            assert "checking" in steps and "up_to_date" in steps, steps
            done = next(u for u in ups if u["step"] == "up_to_date")
            assert done["version"] == "1.0.0" and done["detail"]["recalled"] is False
            # update reports do not touch the link status: after the broker's "offline"
            # (the unsealed last will) the board's sealed "online" - queued behind the
            # backlog - sets it back
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and f.db.device(DEVICE)["status"] != "online":
                time.sleep(0.2)
            assert f.db.device(DEVICE)["status"] == "online", f.db.status_log(DEVICE)[-6:]
            f.collector.flush()
            out = CliRunner().invoke(cli, ["--workdir", str(f.workdir), "telemetry", "export", DEVICE,
                                           "--format", "json"])
            assert out.exit_code == 0, out.output
            doc = json.loads(out.output)
            assert {"checking", "up_to_date"} <= {u["step"] for u in doc["updates"]}
            stats = json.loads(CliRunner().invoke(cli, ["--workdir", str(f.workdir), "telemetry", "stats", "--json"]).output)
            assert stats[DEVICE]["update_reports"] >= 2 and stats[DEVICE]["lost"] == 0
        finally:
            sink.close()
