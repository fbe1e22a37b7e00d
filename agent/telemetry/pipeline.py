# The telemetry pipeline of the agent, one per device, on one asyncio loop:
#
#   sampler     every period: board vitals + pump -> CBOR record -> sealed
#               (COSE_Encrypt0, next sequence number) -> flash queue on /data
#               (plus a sealed "online" status every status_every_s)
#   publisher   flash queue -> MQTT QoS 1 over mutual TLS (sender.publisher)
#   receiver    inbound commands from the client's bounded inbox (sender.receiver)
#   supervisor  keeps the MQTT connection up with backoff (mqtt.Supervisor)
#
# keep_sampling() is the one sampling schedule: the sampler task calls it, and
# so do the update agent's busy hooks while a blocking update step holds the
# event loop (records go to the flash queue; they are published once the
# event loop runs again).
import gc
import os

from board.compat import asyncio, ticks_add, ticks_diff, ticks_ms
from agent import config as agent_config
from agent.telemetry import cose
from agent.telemetry.mqtt import Supervisor, TLSConfig
from agent.telemetry.queue import FlashQueue, QueueError
from agent.telemetry.sender import TelemetrySender
from agent.telemetry.seqstore import SeqStore, SeqStoreError

# HAL pump states (board/hal.py) -> SEALING.md section 5 vocabulary.
PUMP_STATES = {"infusing": "running", "running": "running", "idle": "idle", "alarm": "alarm",
               "paused": "paused", "stopped": "stopped"}
VITALS = ("hr", "spo2", "bp_sys", "bp_dia", "temp")

# config.json "telemetry" map; missing keys take these.
TELEMETRY_DEFAULTS = {
    "period_ms": 1000,  # 1 Hz sampling
    "queue_kib": 512,  # flash queue bound (capped to fit the data partition)
    "segment_kib": 16,
    "status_every_s": 60,  # periodic sealed "online" status
    "keepalive_s": 30,
    "window": 8,  # unacknowledged publishes in flight
    "seq_block": 64,  # sequence numbers reserved per flash write
    "backoff_base_ms": 500,
    "backoff_max_ms": 30000,
}
# At most this share of the data partition goes to the queue: littlefs needs
# free blocks for copy-on-write and metadata, the sequence store needs a few.
QUEUE_SHARE_NUM = 5
QUEUE_SHARE_DEN = 8


def queue_capacity(data_dir, want, segment):
    # The configured bound, capped to QUEUE_SHARE of the partition and
    # rounded down to whole segments (at least two, the queue's minimum).
    try:
        st = os.statvfs(data_dir)
        total = st[0] * st[2]
    except (OSError, AttributeError):
        total = 0
    cap = want
    if total:
        cap = min(cap, total * QUEUE_SHARE_NUM // QUEUE_SHARE_DEN)
    cap = cap // segment * segment
    if cap < 2 * segment:
        cap = 2 * segment
    return cap


class TelemetryError(ValueError):
    # The telemetry pipeline cannot start (bad identity, corrupt sequence
    # store, unusable queue); the agent keeps running and reports why.
    pass


class Telemetry:
    def __init__(self, board, ident, cfg, fw):
        self.board = board
        self.ident = ident
        t = agent_config.section(cfg, "telemetry", TELEMETRY_DEFAULTS)
        self.cfg = t
        self.period_ms = t["period_ms"]
        data = board.mounts()["data"]
        seg = t["segment_kib"] * 1024
        self.capacity = queue_capacity(data, t["queue_kib"] * 1024, seg)
        try:
            sealer = cose.Sealer(ident["kid"], ident["key"], ident["base_iv"])
            seq = SeqStore(data, block=t["seq_block"])
            queue = FlashQueue(data + "/queue", capacity=self.capacity, segment_size=seg)
        except (SeqStoreError, QueueError, OSError) as e:
            raise TelemetryError("telemetry store: %s" % e)
        self.sender = TelemetrySender(ident["device_id"], sealer, seq, queue, self._sample, clock=self._clock,
                                      fw=fw, window=t["window"])
        self.tls = TLSConfig(ident["cert_der"], ident["key_der"], ident["ca_der"], ident["server_hostname"])
        # Parse the certificates and key into the TLS context now, while the
        # heap is still unfragmented (the context is kept for every reconnect).
        try:
            self.tls.context()
        except (OSError, ValueError) as e:
            raise TelemetryError("TLS identity: %s" % e)
        self.sup = None
        self._tasks = []
        self._sampling = None
        self.update_reports = 0
        self._next_ms = ticks_ms()
        self._status_ms = ticks_ms()
        self._status_every = t["status_every_s"] * 1000

    def _clock(self):
        return int(self.board.time())

    def _sample(self):
        b = self.board
        v = b.read_vitals()
        s = {}
        for k in VITALS:
            if k in v:
                s[k] = v[k]
        if self.ident["pump"]:
            p = b.read_pump()
            st = p.get("state")
            s["pump"] = {"state": PUMP_STATES.get(st, st), "rate": p.get("rate", 0),
                         "vtbi": p.get("vtbi", 0), "infused": p.get("infused", 0),
                         "alarms": p.get("alarms") or []}
        return s

    # -- sampling on schedule, from the sampler task or from callbacks that
    #    run while the event loop is blocked (update installs)
    def due_ms(self):
        return ticks_diff(self._next_ms, ticks_ms())

    def keep_sampling(self):
        now = ticks_ms()
        if ticks_diff(now, self._next_ms) < 0:
            return False
        try:
            self.sender.sample_once()
        except MemoryError:
            self.sender.stats["sample_errors"] += 1
            gc.collect()
        self._next_ms = ticks_add(self._next_ms, self.period_ms)
        if ticks_diff(now, self._next_ms) >= 0:
            # Fell behind (a long blocking step): skip the missed slots, keep cadence.
            self._next_ms = ticks_add(now, self.period_ms)
        if self._status_every and ticks_diff(now, self._status_ms) >= self._status_every:
            self._status_ms = now
            self.sender.enqueue_status("online")
        return True

    async def sampler(self):
        while True:
            self.keep_sampling()
            d = self.due_ms()
            await asyncio.sleep((d if d > 0 else 0) / 1000)

    # -- running on the event loop

    def start(self):
        # Create the client and its supervisor, start the four tasks.
        s = self.sender
        t = self.cfg
        client = s.make_client(self.ident["host"], self.ident["port"], self.tls, t["keepalive_s"])
        # identity "endpoints": [[host, port], ...] (broker cluster nodes), first = host/port
        eps = self.ident.get("endpoints")
        self.sup = Supervisor(client, s.on_connected, t["backoff_base_ms"], t["backoff_max_ms"],
                              [(e[0], e[1]) for e in eps] if eps else None)
        self._tasks = [asyncio.create_task(self.sup.run()), asyncio.create_task(s.publisher(self.sup)),
                       asyncio.create_task(s.receiver(client))]
        self._sampling = asyncio.create_task(self.sampler())

    def stop_sampling(self):
        if self._sampling is not None:
            self._sampling.cancel()
            self._sampling = None

    async def shutdown(self, drain_ms=None):
        # Stop the pipeline. drain_ms=None: stop at once, no DISCONNECT (the
        # broker publishes the last will, as for a reset). A number: stop
        # sampling, wait up to drain_ms for the queue to be delivered and
        # acknowledged, then disconnect cleanly.
        self.stop_sampling()
        client = self.sup.client if self.sup is not None else None
        if drain_ms is not None and client is not None:
            t0 = ticks_ms()
            while ticks_diff(ticks_ms(), t0) < drain_ms:
                if len(self.sender.queue) == 0 and client.inflight() == 0 and client.connected:
                    break
                await asyncio.sleep(0.05)
            if client.connected:
                await client.disconnect()
        self.sender.stop()
        if self.sup is not None:
            self.sup.stop()
        for task in self._tasks:
            task.cancel()
        self._tasks = []
        await asyncio.sleep(0)
        self.sender.queue.sync()

    def update_status(self, ev):
        # One update agent report -> one sealed status record (state "update").
        seq = self.sender.enqueue_status("update", update=ev)
        if seq is not None:
            self.update_reports += 1
        return seq

    def stats(self):
        s = self.sender
        c = self.sup.client if self.sup is not None else None
        return {
            "device_id": s.device_id,
            "sampled": s.stats["sampled"],
            "acked": s.stats["acked"],
            "published": s.stats["published"],
            "queued": len(s.queue),
            "dropped": s.queue.dropped,
            "errors": s.stats["sample_errors"] + s.stats["store_errors"] + s.stats["seal_errors"],
            "update_reports": self.update_reports,
            "connected": bool(c is not None and c.connected),
            "connects": self.sup.connects if self.sup is not None else 0,
            "next_seq": s.seq.peek(),
            "queue_capacity": self.capacity,
            "last_error": None if self.sup is None or self.sup.last_error is None
            else repr(self.sup.last_error)[:120],
        }
