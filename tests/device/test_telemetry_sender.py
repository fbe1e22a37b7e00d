# The sampling side of the pipeline without a network: sample -> seal ->
# flash queue, reboot gap declaration ("skip"), key rotation, bad samples,
# and removal from the queue on in-order PUBACKs.
import devtest
from agent.telemetry import cbor, cose
from agent.telemetry.queue import FlashQueue
from agent.telemetry.seqstore import SeqStore
from agent.telemetry.sender import TelemetrySender, KIND_TELEMETRY, KIND_STATUS

DEV = "pump-9"
K1 = cose.Sealer(b"\x01" * 8, bytes(range(16)), bytes(range(1, 14)))
K2 = cose.Sealer(b"\x02" * 8, bytes(range(16, 32)), bytes(range(2, 15)))
SAMPLE = {"hr": 70, "spo2": 97, "temp": 36.6,
          "pump": {"state": "running", "rate": 10, "vtbi": 50, "infused": 1.5, "alarms": []}}


def make(d, sealer=K1, sample_fn=None, block=16):
    seq = SeqStore(d, block=block)
    q = FlashQueue(d + "/q", capacity=32 * 1024, segment_size=4096, ack_sync_every=1)
    return TelemetrySender(DEV, sealer, seq, q, sample_fn or (lambda: SAMPLE), clock=lambda: 1764489600,
                           fw="1.0.0")


def entries(q):
    out = []
    c = q.cursor()
    while True:
        p, c = q.read(c)
        if p is None:
            return out
        out.append(p)


def opened(entry, sealer=K1):
    kind = entry[:1]
    topic = "medsentry/%s/%s" % (DEV, "status" if kind == KIND_STATUS else "telemetry")
    seq, pt = sealer.open(entry[1:], topic)
    return kind, seq, cbor.loads(pt)


def test_samples_are_sealed_and_queued_in_order():
    s = make(devtest.tmpdir())
    for _ in range(5):
        s.sample_once()
    s.enqueue_status("online")
    es = entries(s.queue)
    assert len(es) == 6
    got = [opened(e) for e in es]
    assert [g[1] for g in got] == [1, 2, 3, 4, 5, 6]
    assert all(g[0] == KIND_TELEMETRY for g in got[:5]) and got[5][0] == KIND_STATUS
    assert got[0][2]["hr"] == 70 and got[0][2]["t"] == 1764489600
    assert got[5][2]["state"] == "online" and got[5][2]["queued"] == 5 and got[5][2]["dropped"] == 0
    assert "skip" not in got[0][2]


def test_reboot_declares_unused_reserved_numbers():
    d = devtest.tmpdir()
    s = make(d, block=16)
    for _ in range(5):
        s.sample_once()  # uses 1..5, ceiling 17 on flash
    s2 = make(d, block=16)  # reboot: continues at 17
    assert s2._skip == (6, 16)
    s2.sample_once()
    last = opened(entries(s2.queue)[-1])
    assert last[1] == 17 and last[2]["skip"] == [6, 16]
    s2.sample_once()
    assert "skip" not in opened(entries(s2.queue)[-1])[2]


def test_reboot_with_empty_queue_declares_whole_reservation_tail():
    d = devtest.tmpdir()
    s = make(d, block=16)
    for _ in range(3):
        s.sample_once()
    while s.queue.peek() is not None:
        s.queue.ack()
    s2 = make(d, block=16)
    # The numbers 1..3 were delivered; 1..16 declared is harmless for them
    # (the collector only moves *missing* numbers to skipped).
    assert s2._skip == (1, 16)


def test_bad_sample_consumes_no_sequence_number():
    d = devtest.tmpdir()
    calls = [0]

    def flaky():
        calls[0] += 1
        if calls[0] == 2:
            return {"hr": "fast"}
        if calls[0] == 3:
            raise OSError(5)  # sensor bus error
        return SAMPLE

    s = make(d, sample_fn=flaky)
    for _ in range(4):
        s.sample_once()
    assert s.stats["sample_errors"] == 2 and s.stats["sampled"] == 2
    assert [opened(e)[1] for e in entries(s.queue)] == [1, 2]


def test_key_rotation_continues_sequence():
    d = devtest.tmpdir()
    s = make(d)
    s.sample_once()
    s.rotate_key(K2)
    s.sample_once()
    es = entries(s.queue)
    assert opened(es[0], K1)[1] == 1
    assert opened(es[1], K2)[1] == 2
    devtest.raises(cose.CoseError, K1.open, es[1][1:], "medsentry/%s/telemetry" % DEV)


def test_pubacks_remove_in_order_only():
    d = devtest.tmpdir()
    s = make(d)
    for _ in range(4):
        s.sample_once()
    es = entries(s.queue)
    # As the publisher records them: [pid, payload, acked]
    s._inflight = [[10, es[0], False], [11, es[1], False], [12, es[2], False]]
    s._on_puback(11)  # out of order: nothing leaves the queue yet
    assert len(s.queue) == 4
    s._on_puback(10)  # now 10 and 11 go
    assert len(s.queue) == 2 and s.queue.peek() == es[2]
    s._on_puback(99)  # unknown: ignored
    s._on_puback(12)
    assert len(s.queue) == 1 and s.queue.peek() == es[3]
    assert s.stats["acked"] == 3


def test_publishing_is_paced_below_the_brokers_per_client_limit():
    # At most PACE_N per PACE_MS (400/s): the broker drops what one client
    # sends over 500/s although a QoS 1 PUBACK still comes, so a device
    # draining a long backlog must never get there.
    from agent.telemetry import sender as S

    s = make(devtest.tmpdir())
    t, sent = 1000, 0
    while t < 1000 + 2000:  # 2 s of a publisher that never has to wait for the network
        wait = s._pace(t)
        if wait:
            assert 0 < wait <= S.PACE_MS
            t += wait
        else:
            sent += 1
    assert S.PACE_N * 1000 // S.PACE_MS < 500
    assert sent <= 2 * S.PACE_N * 1000 // S.PACE_MS + S.PACE_N, sent
    assert sent >= 2 * S.PACE_N * 1000 // S.PACE_MS - S.PACE_N, sent
