# Application entry point, started by the loader from the active slot.
#
# Without a device identity (/state/identity.json, written by factory
# provisioning, see agent/identity.py) the agent runs its plain loop:
# watchdog, status, update agent - exactly what an unprovisioned factory
# board does.
#
# With an identity it also runs the telemetry pipeline (agent/telemetry) on
# one asyncio event loop:
#   sampler       every period: board vitals + pump -> CBOR record -> sealed
#                 (COSE_Encrypt0, next sequence number) -> flash queue on /data
#   publisher     flash queue -> MQTT QoS 1 over mutual TLS (sender.publisher)
#   supervisor    keeps the MQTT connection up with backoff (mqtt.Supervisor)
#   housekeeping  the main coroutine, 1 Hz: feed the watchdog, tick the update
#                 agent, report the local status (board.report_status)
# The update agent's tick is synchronous and may block for seconds (TUF
# refresh, download, install). Its busy hooks and report callback keep the
# watchdog fed and keep sampling on schedule (records go to the flash queue;
# they are published once the tick returns). Every update report also leaves
# the device as a sealed status record: state "update" with an "update" map.
import gc
import os

from board.compat import sleep_ms, ticks_ms, ticks_diff, ticks_add
from agent import config as agent_config
from agent import identity as agent_identity

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
        from agent.telemetry import cose
        from agent.telemetry import sender as sender_mod
        from agent.telemetry.mqtt import TLSConfig
        from agent.telemetry.queue import FlashQueue, QueueError
        from agent.telemetry.seqstore import SeqStore, SeqStoreError

        self.board = board
        self.ident = ident
        t = {}
        for k in TELEMETRY_DEFAULTS:
            t[k] = TELEMETRY_DEFAULTS[k]
        over = cfg.get("telemetry")
        if isinstance(over, dict):
            for k in over:
                if k in t and isinstance(over[k], int) and over[k] > 0:
                    t[k] = over[k]
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
        self.sender = sender_mod.TelemetrySender(
            ident["device_id"], sealer, seq, queue, self._sample, period_ms=self.period_ms,
            clock=self._clock, fw=fw, window=t["window"], status_every_ms=t["status_every_s"] * 1000)
        self.tls = TLSConfig(ident["cert_der"], ident["key_der"], ident["ca_der"], ident["server_hostname"])
        # Parse the certificates and key into the TLS context now, while the
        # heap is still unfragmented (the context is kept for every reconnect).
        try:
            self.tls.context()
        except (OSError, ValueError) as e:
            raise TelemetryError("TLS identity: %s" % e)
        self.sup = None
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

    async def sampler(self, asyncio):
        while True:
            self.keep_sampling()
            d = self.due_ms()
            await asyncio.sleep((d if d > 0 else 0) / 1000)

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


class Agent:
    def __init__(self, board, slot, trial=False):
        self.board = board
        self.slot = slot
        self.trial = trial
        state = board.mounts()["state"]
        self.cfg = agent_config.load(state)
        self.started = ticks_ms()
        self.loops = 0
        self.update_state = {}
        self.tel = None
        self.telemetry_error = None
        self.ident = None
        self.updates = None
        try:
            self.ident = agent_identity.load(state)
        except agent_identity.IdentityError as e:
            self.telemetry_error = "identity: %s" % e
        if self.ident is not None:
            # The long-lived telemetry objects (code, flash queue, TLS context)
            # are allocated first, before the update agent: on a 256 KiB heap
            # the TLS handshake then still finds contiguous room.
            try:
                self.tel = Telemetry(board, self.ident, self.cfg, None)
            except (TelemetryError, ValueError) as e:
                self.telemetry_error = str(e)
            except MemoryError:
                # Never let telemetry keep the agent (watchdog, updates) from running.
                self.telemetry_error = "out of memory starting telemetry"
            gc.collect()
        from agent.updates import UpdateAgent, SLICE_MS

        self.updates = UpdateAgent(board, slot, trial, self.cfg, self._on_update)
        if self.tel is not None:
            self.tel.sender.fw = self.updates.version
        # While an update step blocks the event loop (network waits, every
        # chunk of an install) the update agent calls its busy hooks, which
        # feed the watchdog: keep sampling on schedule there too.
        if self.tel is not None:
            self.updates.busy_hooks.append(self.tel.keep_sampling)
            # A trial's network health: the broker acknowledged a record
            # this boot (or the update server answers, agent/updates.py).
            self.updates.network_checks.append(lambda: self.tel.stats()["acked"] > 0)
            # Update work gives the event loop back (publishing) every slice.
            self.updates.slice_ms = SLICE_MS
        st = self.updates.installer.boot_state()
        # Events the loader recorded (rollbacks, fallbacks) are reported once.
        self.boot_events = st.get("events", [])[-4:]

    def _on_update(self, ev):
        self.update_state = ev
        if self.tel is not None:
            self.tel.update_status(ev)
            self.tel.keep_sampling()
        self.board.watchdog_feed()
        if self.updates is not None:
            self.report()

    def status(self):
        gc.collect()
        b = self.board
        st = {
            "state": "running",
            "slot": self.slot,
            "trial": self.updates.trial,
            "version": self.updates.version,
            "model": self.updates.model,
            "security_counter": self.updates.counter,
            "reset_reason": b.reset_reason(),
            "uptime_s": ticks_diff(ticks_ms(), self.started) // 1000,
            "heap_free": gc.mem_free() if hasattr(gc, "mem_free") else None,
            "vitals": b.read_vitals(),
            "pump": b.read_pump(),
            "loops": self.loops,
            "update": self.update_state,
            "boot_events": self.boot_events,
            "recalled": self.updates.recalled,
        }
        if self.ident is not None:
            st["device_id"] = self.ident["device_id"]
        if self.tel is not None:
            st["telemetry"] = self.tel.stats()
        elif self.telemetry_error:
            st["telemetry"] = {"error": self.telemetry_error}
        return st

    def report(self):
        self.board.report_status(self.status())

    def run(self, max_loops=0):
        b = self.board
        b.watchdog_start(self.cfg.get("watchdog_ms", 5000))
        print("medsentry agent %s: slot %s%s, reset %s%s" % (
            self.updates.version, self.slot, " (trial)" if self.trial else "", b.reset_reason(),
            (", device " + self.ident["device_id"]) if self.ident else ""))
        if self.telemetry_error:
            print("telemetry disabled:", self.telemetry_error)
        if self.tel is not None:
            from agent.telemetry.mqtt import asyncio

            asyncio.run(self._run_async(asyncio, max_loops))
            return
        every = self.cfg.get("status_every_ms", 1000)
        while not self._housekeep(max_loops):
            sleep_ms(every)

    def _housekeep(self, max_loops):
        # One turn of the 1 Hz loop: watchdog, update agent, (sampling that a
        # blocking update step delayed), local status. True when done.
        b = self.board
        b.watchdog_feed()
        self.updates.tick(b.time())
        if self.tel is not None:
            self.tel.keep_sampling()
        self.report()
        self.loops += 1
        return bool(max_loops) and self.loops >= max_loops

    async def _run_async(self, asyncio, max_loops):
        from agent.telemetry.mqtt import Supervisor

        tel = self.tel
        s = tel.sender
        ident = self.ident
        t = tel.cfg
        client = s.make_client(ident["host"], ident["port"], tel.tls, t["keepalive_s"])
        sup = Supervisor(client, s.on_connected, t["backoff_base_ms"], t["backoff_max_ms"])
        tel.sup = sup
        tasks = [asyncio.create_task(sup.run()), asyncio.create_task(s.publisher(sup)),
                 asyncio.create_task(tel.sampler(asyncio))]
        every = self.cfg.get("status_every_ms", 1000)
        try:
            while not self._housekeep(max_loops):
                await asyncio.sleep(every / 1000)
        finally:
            s.stop()
            sup.stop()
            for task in tasks:
                task.cancel()
            await asyncio.sleep(0)
            s.queue.sync()


def run(board, slot, trial=False, max_loops=0):
    Agent(board, slot, trial).run(max_loops)
