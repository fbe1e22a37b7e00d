"""Issue 11 item 4: a device key holder cannot slow the collector or fake its loss.

The review sealed every other sequence number: each accepted record rewrote all
of that device's holes (~11 ms per record at the cap), and a sequence jump made
``lost`` reach 1,099,511,627,772. Real Ingestor, real SQLite, real AES-CCM.
"""
from __future__ import annotations

import statistics
import time

import cbor2
import pytest

from host_tools.collector import FleetDB, Ingestor
from host_tools.collector import sequence
from host_tools.collector.cose import seal
from host_tools.pki import FleetPKI

HOLES = 3000
BATCH = 200


def topic(dev: str) -> str:
    return f"medsentry/{dev}/telemetry"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    p = FleetPKI(tmp_path_factory.mktemp("pki"))
    p.init()
    for dev in ("pump-a", "pump-b", "pump-c", "pump-d", "pump-e"):
        p.issue(dev, "pump-v2")
    return p


@pytest.fixture
def ing(pki, tmp_path):
    db = FleetDB(tmp_path / "fleet.db")
    yield Ingestor(pki, db)
    db.close()


def msg(pki: FleetPKI, dev: str, seq: int, **extra: object) -> bytes:
    tk = pki.device(dev).active_key()
    rec = {"t": 1764489600 + seq, "seq": seq, "hr": 70, **extra}
    return seal(cbor2.dumps(rec), key=tk.key, base_iv=tk.base_iv, kid=tk.kid, seq=seq, topic=topic(dev))


def per_record_s(ing: Ingestor, dev: str, payloads: list[bytes]) -> float:
    """Median seconds per accepted record over small batches (robust to load)."""
    samples = []
    for i in range(0, len(payloads), 20):
        chunk = payloads[i:i + 20]
        t0 = time.perf_counter()
        for p in chunk:
            assert ing.handle(topic(dev), p).kind == "accepted"
        samples.append((time.perf_counter() - t0) / len(chunk))
    return statistics.median(samples)


def test_per_record_cost_does_not_grow_with_holes(pki, ing):
    # anchor: the first records of a device with (almost) no holes
    early = [msg(pki, "pump-a", 2 * i + 1) for i in range(BATCH)]
    anchor = per_record_s(ing, "pump-a", early)
    # the attack: every other number, up to HOLES holes
    for i in range(BATCH, HOLES):
        assert ing.handle(topic("pump-a"), msg(pki, "pump-a", 2 * i + 1)).kind == "accepted"
    late = [msg(pki, "pump-a", 2 * i + 1) for i in range(HOLES, HOLES + BATCH)]
    figure = per_record_s(ing, "pump-a", late)
    assert len(ing.db.missing("pump-a")) == HOLES + BATCH - 1
    assert figure / anchor < 3, (figure, anchor)
    # another device's records while pump-a holds thousands of holes
    other = per_record_s(ing, "pump-b", [msg(pki, "pump-b", s) for s in range(1, BATCH + 1)])
    assert other / anchor < 3, (other, anchor)
    # filling a hole in the middle is as cheap
    fills = [msg(pki, "pump-a", 2 * i) for i in range(HOLES // 2, HOLES // 2 + BATCH)]
    assert per_record_s(ing, "pump-a", fills) / anchor < 3


def test_implausible_jump_is_rejected_and_invents_no_loss(pki, ing):
    t0 = time.time()
    assert ing.handle(topic("pump-c"), msg(pki, "pump-c", 1), now=t0).kind == "accepted"
    out = ing.handle(topic("pump-c"), msg(pki, "pump-c", (1 << 40) - 1), now=t0 + 1)
    assert out.kind == "implausible_seq" and out.rejected
    assert ing.db.lost("pump-c") == 0 and ing.db.seqs("pump-c") == [1]
    assert ing.db.summary()["rejected_by_reason"] == {"implausible_seq": 1}
    # the genuine device goes on
    assert ing.handle(topic("pump-c"), msg(pki, "pump-c", 2), now=t0 + 2).kind == "accepted"
    # a jump within the slack is a plain gap
    far = 2 + sequence.JUMP_SLACK
    assert ing.handle(topic("pump-c"), msg(pki, "pump-c", far), now=t0 + 3).kind == "accepted"
    assert ing.db.lost("pump-c") == far - 3
    # after a long silence a proportionally longer jump is plausible, not more
    quiet = 10_000
    limit = far + sequence.JUMP_SLACK + sequence.MAX_RATE * quiet
    assert ing.handle(topic("pump-c"), msg(pki, "pump-c", limit + 1), now=t0 + 3 + quiet).kind == \
        "implausible_seq"
    assert ing.handle(topic("pump-c"), msg(pki, "pump-c", limit), now=t0 + 3 + quiet).kind == "accepted"
    assert ing.db.lost("pump-c") == (far - 3) + (limit - far - 1)


def test_back_to_back_jumps_cannot_each_claim_the_slack(pki, ing):
    """The review's attack, repeated: a key holder sends records that each jump the
    whole slack, back to back. It invented 26 million lost numbers with 200 records;
    now the slack is a budget: the first jump spends it, the next are refused, and
    the loss stays within one slack plus what the rate allows."""
    t0 = time.time()
    assert ing.handle(topic("pump-e"), msg(pki, "pump-e", 1), now=t0).kind == "accepted"
    seq, kinds = 1, []
    for i in range(200):
        nxt = seq + sequence.JUMP_SLACK
        out = ing.handle(topic("pump-e"), msg(pki, "pump-e", nxt), now=t0 + 1 + i * 0.01)
        kinds.append(out.kind)
        if out.kind == "accepted":
            seq = nxt
    assert kinds[0] == "accepted" and kinds.count("accepted") == 1, kinds.count("accepted")
    assert ing.db.lost("pump-e") <= sequence.JUMP_SLACK + sequence.MAX_RATE * 3
    # the slack comes back with time: an hour later one more such jump is plausible
    out = ing.handle(topic("pump-e"), msg(pki, "pump-e", seq + sequence.JUMP_SLACK),
                     now=t0 + 3 + sequence.SLACK_REFILL_S)
    assert out.kind == "accepted"
    # and a device in order never spends any
    for i in range(1, 50):
        assert ing.handle(topic("pump-e"), msg(pki, "pump-e", seq + sequence.JUMP_SLACK + i),
                          now=t0 + 3 + sequence.SLACK_REFILL_S + i).kind == "accepted"


def test_first_record_jump_is_bounded_by_key_age(pki, ing):
    out = ing.handle(topic("pump-d"), msg(pki, "pump-d", 1_099_511_627_773))
    assert out.kind == "implausible_seq"
    assert ing.db.lost() == 0


def test_skip_cannot_hide_loss(pki, ing):
    dev = "pump-a"
    for s in (1, 5):
        assert ing.handle(topic(dev), msg(pki, dev, s)).kind == "accepted"
    assert ing.db.missing(dev) == [(2, 4)]
    # a skip over older holes (below the previous highest) is not believed
    assert ing.handle(topic(dev), msg(pki, dev, 6, skip=[2, 4])).kind == "accepted"
    assert ing.db.missing(dev) == [(2, 4)]
    # a skip wider than MAX_SKIP is refused as a whole: the jump stays missing
    top = 6 + sequence.MAX_SKIP + 2
    assert ing.handle(topic(dev), msg(pki, dev, top, skip=[7, top - 1])).kind == "accepted"
    assert ing.db.missing(dev) == [(2, 4), (7, top - 1)]
    assert ing.db.lost(dev) == 3 + top - 7
    kinds = [g["kind"] for g in ing.db.gap_log(dev)]
    assert kinds.count("skip_refused") == 2 and "skipped" not in kinds
    # a genuine reboot skip (within the record's own jump, small) still works
    assert ing.handle(topic(dev), msg(pki, dev, top + 64, skip=[top + 1, top + 63])).kind == "accepted"
    assert ing.db.missing(dev) == [(2, 4), (7, top - 1)]


def test_hole_cap_expires_the_oldest_and_still_counts_it(pki, ing, monkeypatch):
    monkeypatch.setattr(sequence, "MAX_MISSING_RANGES", 50)
    dev = "pump-b"
    for i in range(80):
        assert ing.handle(topic(dev), msg(pki, dev, 2 * i + 1)).kind == "accepted"
    assert len(ing.db.missing(dev)) == 50
    assert ing.db.lost(dev) == 79  # 79 holes of one number each: 29 expired, 50 open
    assert ing.db.counters(dev)["lost_expired"] == 29
    # an expired hole is no longer fillable (and is not double counted)
    assert ing.handle(topic(dev), msg(pki, dev, 2)).kind == "replayed"
    assert ing.handle(topic(dev), msg(pki, dev, 158)).kind == "accepted"  # an open one is
    assert ing.db.lost(dev) == 78
    # a restarted collector sees the same state
    again = Ingestor(pki, ing.db)
    assert again.seq[dev].missing == [list(r) for r in ing.db.missing(dev)]
