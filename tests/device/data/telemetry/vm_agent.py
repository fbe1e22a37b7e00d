# The agent's telemetry pipeline (agent/telemetry/pipeline.py) for end-to-end
# tests and benchmarks, run on the MicroPython VM (or CPython): reads a JSON
# config, runs the pipeline on a board whose sensors give synthetic vitals,
# seals, queues on "flash" (data_dir), publishes over mutual TLS, prints one
# "@@RESULT {json}" line at the end.
#
#   micropython vm_agent.py config.json
#
# Other VM scripts import identity() from it (the config's DER files as the
# identity map provisioning writes).
#
# Config: device identity (device_id, kid/key/base_iv hex, cert/key_der/ca DER
# paths, server_hostname, host, port), data_dir, duration_ms (sampling time),
# drain_ms (delivery time after it), and any key of the agent's config.json
# "telemetry" map (pipeline.TELEMETRY_DEFAULTS: period_ms, keepalive_s,
# status_every_s, seq_block, window, backoff_base_ms, backoff_max_ms, ...).
import sys
import json
import gc
import time
import binascii

from board.compat import asyncio, mem_free, ticks_ms, ticks_diff
from board.hal import Board
from agent.telemetry.pipeline import TELEMETRY_DEFAULTS, Telemetry


class SynthBoard(Board):
    # The HAL calls the telemetry pipeline makes: the data partition, the
    # clock and the sensors (a pump with synthetic, changing vitals).
    def __init__(self, data_dir):
        self.data_dir = data_dir
        self.n = 0

    def mounts(self):
        return {"data": self.data_dir}

    def time(self):
        return time.time()

    def read_vitals(self):
        self.n += 1
        i = self.n
        return {"hr": 60 + i % 40, "spo2": 95 + i % 5, "bp_sys": 110 + i % 20, "bp_dia": 70 + i % 10,
                "temp": 36.5 + (i % 10) / 10}

    def read_pump(self):
        return {"state": "running", "rate": 25.0, "vtbi": 100.0, "infused": self.n * 0.01, "alarms": []}


def rd(path):
    with open(path, "rb") as f:
        return f.read()


def identity(cfg):
    u = binascii.unhexlify
    return {"device_id": cfg["device_id"], "kid": u(cfg["kid"]), "key": u(cfg["key"]),
            "base_iv": u(cfg["base_iv"]), "cert_der": rd(cfg["cert"]), "key_der": rd(cfg["key_der"]),
            "ca_der": rd(cfg["ca"]), "server_hostname": cfg.get("server_hostname", cfg["host"]),
            "host": cfg["host"], "port": cfg["port"], "pump": True}


async def run(tel, duration_ms, drain_ms):
    tel.start()
    try:
        await asyncio.sleep(duration_ms / 1000)
    finally:
        await tel.shutdown(drain_ms)


def main():
    with open(sys.argv[1]) as f:
        cfg = json.load(f)
    tcfg = {}
    for k in TELEMETRY_DEFAULTS:
        if k in cfg:
            tcfg[k] = cfg[k]
    tel = Telemetry(SynthBoard(cfg["data_dir"]), identity(cfg), {"telemetry": tcfg}, cfg.get("fw"))
    s = tel.sender
    skip = s._skip
    gc.collect()
    free0 = mem_free()
    t0 = ticks_ms()
    asyncio.run(run(tel, cfg.get("duration_ms", 5000), cfg.get("drain_ms", 10000)))
    gc.collect()
    sup = tel.sup
    out = {"stats": s.stats, "client": sup.client.stats, "connects": sup.connects, "failures": sup.failures,
           "last_error": repr(sup.last_error), "queued": len(s.queue), "dropped": s.queue.dropped,
           "first_seq": s.first_seq, "next_seq": s.seq.peek(), "skip": list(skip) if skip else None,
           "mem_free_start": free0, "mem_free_end": mem_free(), "elapsed_ms": ticks_diff(ticks_ms(), t0)}
    print("@@RESULT " + json.dumps(out))


if __name__ == "__main__":
    main()
