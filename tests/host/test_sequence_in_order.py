"""The collector's in-order shortcut (``SeqState.next_in_order``, taken by
``Ingestor._sequence_and_store`` for a record numbered highest + 1 without a skip)
must leave a device's sequence state exactly as the general steps do: the
plausibility check passes, no hole opens or expires, the jump budget refills and is
not spent, highest and last_at move. Hypothesis over states and clocks, including
a clock that goes back."""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from host_tools.collector.sequence import JUMP_SLACK, SeqState, apply


@st.composite
def states(draw) -> tuple[SeqState, SeqState, float, float]:
    highest = draw(st.integers(1, 1 << 40))
    holes, lo = [], 1
    for _ in range(draw(st.integers(0, 5))):
        a = draw(st.integers(lo, highest))
        b = draw(st.integers(a, highest))
        if b >= highest:
            break
        holes.append([a, b])
        lo = b + 2
        if lo >= highest:
            break
    last_at = draw(st.floats(0, 2e9))
    slack = draw(st.floats(0, float(JUMP_SLACK)))
    now = last_at + draw(st.floats(-3600, 7200))  # the collector's clock may step back
    since = draw(st.floats(0, 2e9))
    pair = []
    for _ in range(2):
        s = SeqState(highest, holes, last_at)
        s.slack = slack
        pair.append(s)
    return pair[0], pair[1], now, since


@given(states())
def test_next_in_order_is_the_general_steps(case):
    fast, general, now, since = case
    seq = general.highest + 1
    # the general steps of _sequence_and_store for a record above the highest
    assert seq - general.highest <= general.allowed_jump(now, since)
    added, skipped, note = general.plan_jump(seq, None)
    assert (added, skipped, note) == ([], [], "")
    expired = general.plan_expiry(len(added))
    assert expired == []
    apply(general, expired, added)
    general.spend_jump(seq - general.highest, now, since)
    general.highest = seq
    general.last_at = now

    fast.next_in_order(now)
    for name in SeqState.__slots__:
        assert getattr(fast, name) == getattr(general, name), name
