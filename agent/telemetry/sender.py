# The sealing and publishing half of the telemetry pipeline
# (agent/telemetry/pipeline.py composes it with sampling and the connection):
#
#   sample_fn() -> record (CBOR) -> seal (COSE_Encrypt0, next sequence number)
#   -> flash queue -> MQTT PUBLISH QoS 1 -> PUBACK -> removed from the queue
#
#   sample_once / enqueue_status  seal one record into the flash queue
#                                 (called by the pipeline's sampling schedule);
#   publisher  while connected, reads ahead from the queue (window of
#              `window` unacknowledged publishes) and publishes QoS 1;
#   receiver   takes inbound messages on medsentry/<id>/cmd from the client's
#              bounded inbox and hands them to on_command.
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

from board.compat import asyncio, ticks_ms, ticks_diff
from agent.telemetry import cose, records
from agent.telemetry.mqtt import MQTTClient, MQTTTransportError, MQTTProtocolError

KIND_TELEMETRY = b"T"
KIND_STATUS = b"S"
# Publishing is paced: at most PACE_N records per PACE_MS (400/s), below the
# broker's per-client limit (500/s after a burst of 2,000, host_tools/broker/
# NOTES.md), which drops what is over it although a QoS 1 PUBACK still comes:
# draining a long backlog never trips it.
PACE_MS = 100
PACE_N = 40


class SenderError(ValueError):
    pass


def _unix_time():
    # MicroPython's unix port counts from 1970 like CPython; a bare-metal
    # board with a 2000 epoch must pass its own clock.
    return int(time.time())


class TelemetrySender:
    def __init__(self, device_id, sealer, seqstore, queue, sample_fn, clock=None, fw=None, window=8):
        self.device_id = device_id
        self.topic_telemetry = "medsentry/%s/telemetry" % device_id
        self.topic_status = "medsentry/%s/status" % device_id
        self.topic_cmd = "medsentry/%s/cmd" % device_id
        self.sealer = sealer
        self.seq = seqstore
        self.queue = queue
        self.sample_fn = sample_fn
        self.clock = clock or _unix_time
        self.fw = fw
        self.window = window
        self.on_command = None  # fn(payload) for the command handler
        self.stats = {"sampled": 0, "sample_errors": 0, "store_errors": 0, "seal_errors": 0, "published": 0,
                      "acked": 0, "status": 0, "commands": 0}
        self._inflight = []  # [pid, sealed payload, acked], in publish order
        self._cursor = queue.cursor()
        self._wake = asyncio.Event()
        self._running = True
        self._pace_t = None
        self._pace_n = 0
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

    def enqueue_status(self, state="online", update=None, extra=None, command=None):
        # A sealed status record into the queue ("update": an update agent
        # report map; extra: the keys of a security record, agent/security).
        # Returns the seq, or None when the record is invalid or too large.
        seq = self.seq.peek()
        try:
            rec = records.status_record(seq, self.clock(), state, self.fw, len(self.queue),
                                        self.queue.dropped, self._skip, update=update, extra=extra,
                                        command=command)
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
                          will=self.will(), max_inflight=self.window, on_puback=self._on_puback, **kw)

    async def receiver(self, client):
        # Inbound messages (the broker's ACL delivers only our cmd topic).
        while self._running:
            topic, payload, qos, retain = await client.recv()
            self.stats["commands"] += 1
            if self.on_command is not None:
                try:
                    self.on_command(payload)
                except ValueError:
                    # A bad command is the handler's business; the loop goes on.
                    pass

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

    def _pace(self, now):
        # ms to wait before the next publish (0: publish now, counted).
        if self._pace_t is None or ticks_diff(now, self._pace_t) >= PACE_MS:
            self._pace_t = now
            self._pace_n = 0
        if self._pace_n >= PACE_N:
            return PACE_MS - ticks_diff(now, self._pace_t)
        self._pace_n += 1
        return 0

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
            wait = self._pace(ticks_ms())
            if wait > 0:
                await asyncio.sleep(wait / 1000)
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

    def stop(self):
        self._running = False
