# The telemetry pipeline on the device:
#
#   sample_fn() -> record (CBOR) -> seal (COSE_Encrypt0, next sequence number)
#   -> flash queue -> MQTT PUBLISH QoS 1 -> PUBACK -> removed from the queue
#
# Three asyncio tasks share one event loop, so sampling never waits for the
# network:
#   sampler    every period_ms: sample, seal, append to the flash queue
#              (plus a sealed status record every status_every_ms);
#   publisher  while connected, reads ahead from the queue (window of
#              `window` unacknowledged publishes) and publishes QoS 1;
#   supervisor (mqtt.Supervisor) keeps the connection up with backoff.
# A record is removed from the queue only when its PUBACK arrives, in order.
# Status records ("online" on every connect, then periodic) go through the
# same queue so that sequence numbers reach the collector in order and a
# status is never silently lost. The last will (unsealed) is set in CONNECT,
# NOT retained: the broker refuses retained messages (retain_available false,
# host_tools/broker/NOTES.md) and the collector's persistent session receives
# the will anyway. Nothing the device publishes is retained.
#
# Queue entries are one kind byte + the sealed message: b"T" telemetry,
# b"S" status.
#
# Reboot gap: the sequence store restarts at its persisted ceiling. The
# numbers between the last sealed record (found in the queue, if still there)
# and the ceiling were reserved but never used: the first record sealed after
# boot declares them with "skip" (SEALING.md section 5).
#
# Key rotation: rotate_key(new_sealer) — later records are sealed under the
# new kid/key/base IV, the sequence number simply continues (one counter per
# device, SEALING.md section 2); records already queued keep their old seal,
# which the collector accepts until the old key is retired.
import time

from board.compat import ticks_add, ticks_diff, ticks_ms
from agent.telemetry import cose, records
from agent.telemetry.mqtt import MQTTClient, MQTTTransportError, MQTTProtocolError, Supervisor, asyncio

KIND_TELEMETRY = b"T"
KIND_STATUS = b"S"


class SenderError(ValueError):
    pass


def _unix_time():
    # MicroPython's unix port counts from 1970 like CPython; a bare-metal
    # board with a 2000 epoch must pass its own clock.
    return int(time.time())


class TelemetrySender:
    def __init__(self, device_id, sealer, seqstore, queue, sample_fn, period_ms=1000, clock=None,
                 fw=None, window=8, status_every_ms=60000):
        self.device_id = device_id
        self.topic_telemetry = "medsentry/%s/telemetry" % device_id
        self.topic_status = "medsentry/%s/status" % device_id
        self.topic_cmd = "medsentry/%s/cmd" % device_id
        self.sealer = sealer
        self.seq = seqstore
        self.queue = queue
        self.sample_fn = sample_fn
        self.period_ms = period_ms
        self.clock = clock or _unix_time
        self.fw = fw
        self.window = window
        self.status_every_ms = status_every_ms
        self.on_command = None  # fn(payload) for the command handler
        self.stats = {"sampled": 0, "sample_errors": 0, "store_errors": 0, "seal_errors": 0, "published": 0,
                      "acked": 0, "status": 0, "commands": 0}
        self._inflight = []  # [pid, sealed payload, acked], in publish order
        self._cursor = queue.cursor()
        self._wake = asyncio.Event()
        self._running = True
        self._skip = self._reboot_skip()
        self.first_seq = None

    # -- sealing

    def _reboot_skip(self):
        hi = self.seq.reserved_from - 1
        lo = self.seq.prev_reservation_start
        last = self.queue.last()
        if last is not None:
            try:
                _, piv, _ = cose.parse(last[1:])
                n = cose.seq_from_piv(piv)
                if n + 1 > lo:
                    lo = n + 1
            except cose.CoseError:
                pass
        if lo <= hi:
            return (lo, hi)
        return None

    def rotate_key(self, sealer):
        self.sealer = sealer

    def _seal(self, kind, topic, rec, seq):
        try:
            n = self.seq.next()
        except OSError:
            # Could not persist the next reservation: nothing is sealed (a
            # number is never used unless its ceiling is on flash).
            self.stats["store_errors"] += 1
            return None
        if n != seq:
            raise SenderError("sequence moved under the sender")
        try:
            msg = self.sealer.seal(seq, records.encode(rec), topic)
        except ValueError:
            # CoseError (record above the 1024-byte message limit) or a CBOR
            # encoding error: the number is burnt, the record is not sent.
            self.stats["seal_errors"] += 1
            return None
        try:
            self.queue.append(kind + msg)
        except OSError:
            # Flash write failed: this number is burnt (never reused); the
            # collector sees a gap.
            self.stats["store_errors"] += 1
            return None
        if self.first_seq is None:
            self.first_seq = seq
        self._skip = None
        self._wake.set()
        return seq

    def sample_once(self):
        # One sample -> sealed record in the queue. Returns the seq or None.
        try:
            sample = self.sample_fn()
            seq = self.seq.peek()
            rec = records.telemetry_record(sample, seq, self.clock(), self._skip)
        except (ValueError, OSError):
            # Sensor driver failure or invalid sample: counted, not sealed,
            # no sequence number consumed.
            self.stats["sample_errors"] += 1
            return None
        self.stats["sampled"] += 1
        return self._seal(KIND_TELEMETRY, self.topic_telemetry, rec, seq)

    def enqueue_status(self, state="online", update=None):
        # A sealed status record into the queue ("update": an update agent
        # report map). Returns the seq, or None when the record is invalid.
        seq = self.seq.peek()
        try:
            rec = records.status_record(seq, self.clock(), state, self.fw, len(self.queue),
                                        self.queue.dropped, self._skip, update=update)
        except records.RecordError:
            self.stats["seal_errors"] += 1
            return None
        self.stats["status"] += 1
        return self._seal(KIND_STATUS, self.topic_status, rec, seq)

    # -- MQTT side

    def will(self):
        return (self.topic_status, records.LAST_WILL, 1, False)

    def make_client(self, host, port, tls=None, keepalive=30, **kw):
        return MQTTClient(self.device_id, host, port, tls=tls, keepalive=keepalive, clean_session=False,
                          will=self.will(), max_inflight=self.window, on_message=self._on_message,
                          on_puback=self._on_puback, **kw)

    def _on_message(self, topic, payload, retain):
        self.stats["commands"] += 1
        if self.on_command is not None and payload is not None:
            self.on_command(payload)

    async def on_connected(self, client):
        await client.subscribe(self.topic_cmd, 1)
        self.enqueue_status("online")

    def _on_puback(self, pid):
        for e in self._inflight:
            if e[0] == pid:
                e[2] = True
                break
        # Remove from the flash queue in order: only the acknowledged prefix.
        while self._inflight and self._inflight[0][2]:
            e = self._inflight.pop(0)
            if self.queue.peek() == e[1]:
                self.queue.ack()
                self.stats["acked"] += 1
            # else: dropped from the full queue meanwhile, nothing to remove

    async def publisher(self, sup):
        while self._running:
            client = sup.client
            if not client.connected:
                await asyncio.sleep(0.05)
                continue
            payload, nxt = self.queue.read(self._cursor)
            if payload is None:
                self._cursor = nxt
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), 0.5)
                except asyncio.TimeoutError:
                    pass
                continue
            kind = payload[:1]
            topic = self.topic_status if kind == KIND_STATUS else self.topic_telemetry
            body = payload[1:]
            try:
                pid = await client.publish(topic, body, 1, False)
            except MQTTTransportError:
                await asyncio.sleep(0.05)
                continue
            except MQTTProtocolError:
                # Only a bad argument can get here (e.g. an oversize entry):
                # skip it rather than block the queue forever.
                self._cursor = nxt
                continue
            self._inflight.append([pid, payload, False])
            self._cursor = nxt
            self.stats["published"] += 1

    async def sampler(self):
        next_ms = ticks_ms()
        status_ms = ticks_ms()
        while self._running:
            try:
                self.sample_once()
            except MemoryError:
                # Heap fragmentation: skip this sample, keep the loop alive.
                self.stats["sample_errors"] += 1
                import gc

                gc.collect()
            now = ticks_ms()
            if self.status_every_ms and ticks_diff(now, status_ms) >= self.status_every_ms:
                status_ms = now
                self.enqueue_status("online")
            next_ms = ticks_add(next_ms, self.period_ms)
            delay = ticks_diff(next_ms, ticks_ms())
            if delay < 0:
                # Fell behind (slow flash): skip missed slots, keep cadence.
                next_ms = ticks_ms()
                delay = 0
            await asyncio.sleep(delay / 1000)

    def stop(self):
        self._running = False


async def run(sender, host, port, tls=None, duration_ms=None, drain_ms=0, keepalive=30,
              backoff_base_ms=200, backoff_max_ms=5000, sample=True, **client_kw):
    # Run sampler + publisher + supervisor. After duration_ms (None: forever)
    # sampling stops; delivery continues for up to drain_ms until the queue is
    # empty, then the client disconnects cleanly. Returns the Supervisor.
    client = sender.make_client(host, port, tls, keepalive, **client_kw)
    sup = Supervisor(client, sender.on_connected, backoff_base_ms, backoff_max_ms)
    tasks = [asyncio.create_task(sup.run()), asyncio.create_task(sender.publisher(sup))]
    sampler = asyncio.create_task(sender.sampler()) if sample else None
    try:
        if duration_ms is None:
            while True:
                await asyncio.sleep(3600)
        await asyncio.sleep(duration_ms / 1000)
        if sampler is not None:
            sampler.cancel()
            sampler = None
        t0 = ticks_ms()
        while ticks_diff(ticks_ms(), t0) < drain_ms:
            if len(sender.queue) == 0 and client.inflight() == 0 and client.connected:
                break
            await asyncio.sleep(0.05)
        if client.connected:
            await client.disconnect()
    finally:
        sender.stop()
        sup.stop()
        if sampler is not None:
            sampler.cancel()
        for t in tasks:
            t.cancel()
        await asyncio.sleep(0)
        sender.queue.sync()
    return sup
