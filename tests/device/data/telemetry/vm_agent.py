# Device-side telemetry agent for end-to-end tests and benchmarks, run on the
# MicroPython VM (or CPython): reads a JSON config, samples synthetic vitals,
# seals, queues on "flash" (data_dir), publishes over mutual TLS, prints one
# "@@RESULT {json}" line at the end.
#
#   micropython vm_agent.py config.json
import sys
import json
import gc
import binascii

from board.compat import mem_free, ticks_ms, ticks_diff
from agent.telemetry import cose, sender as sender_mod
from agent.telemetry.mqtt import TLSConfig, asyncio
from agent.telemetry.queue import FlashQueue
from agent.telemetry.seqstore import SeqStore


def rd(path):
    with open(path, "rb") as f:
        return f.read()


def main():
    with open(sys.argv[1]) as f:
        cfg = json.load(f)
    u = binascii.unhexlify
    sealer = cose.Sealer(u(cfg["kid"]), u(cfg["key"]), u(cfg["base_iv"]))
    seq = SeqStore(cfg["data_dir"], block=cfg.get("seq_block", 64))
    q = FlashQueue(cfg["data_dir"] + "/queue", capacity=cfg.get("queue_capacity", 512 * 1024),
                   segment_size=cfg.get("segment_size", 16 * 1024), ack_sync_every=cfg.get("ack_sync_every", 8))
    n = [0]

    def sample():
        n[0] += 1
        i = n[0]
        return {"hr": 60 + i % 40, "spo2": 95 + i % 5, "bp_sys": 110 + i % 20, "bp_dia": 70 + i % 10,
                "temp": 36.5 + (i % 10) / 10,
                "pump": {"state": "running", "rate": 25.0, "vtbi": 100.0, "infused": i * 0.01, "alarms": []}}

    s = sender_mod.TelemetrySender(cfg["device_id"], sealer, seq, q, sample, period_ms=cfg.get("period_ms", 1000),
                                   fw=cfg.get("fw"), window=cfg.get("window", 8),
                                   status_every_ms=cfg.get("status_every_ms", 60000))
    tls = None
    if cfg.get("ca"):
        tls = TLSConfig(rd(cfg["cert"]), rd(cfg["key_der"]), rd(cfg["ca"]), cfg.get("server_hostname", cfg["host"]))
    skip = s._skip
    gc.collect()
    free0 = mem_free()
    t0 = ticks_ms()
    sup = asyncio.run(sender_mod.run(s, cfg["host"], cfg["port"], tls, duration_ms=cfg.get("duration_ms", 5000),
                                     drain_ms=cfg.get("drain_ms", 10000), keepalive=cfg.get("keepalive", 10),
                                     backoff_base_ms=cfg.get("backoff_base_ms", 100),
                                     backoff_max_ms=cfg.get("backoff_max_ms", 2000),
                                     sample=cfg.get("sample", True)))
    gc.collect()
    out = {"stats": s.stats, "client": sup.client.stats, "connects": sup.connects, "failures": sup.failures,
           "last_error": repr(sup.last_error), "queued": len(q), "dropped": q.dropped,
           "first_seq": s.first_seq, "next_seq": seq.peek(), "skip": list(skip) if skip else None,
           "mem_free_start": free0, "mem_free_end": mem_free(), "elapsed_ms": ticks_diff(ticks_ms(), t0)}
    print("@@RESULT " + json.dumps(out))


main()
