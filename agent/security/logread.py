# Reading the security event log back from flash (format: eventlog.py):
# load() opens an EventLog from what is on flash, verified, entries()
# yields kept entries, verify() re-reads a log directory; and the monitor's
# boot work that goes with loading the log (start(): boot count, boot and
# rollback events), so that starting the monitor loads nothing else.
# Loaded on use only (at boot, by tests and benches); the monitor releases it
# after (agent.release_modules): the resident append path is eventlog.py.
import hashlib
import os

from board.compat import write_atomic
from agent.telemetry import cbor
from agent.security import events
from agent.security.eventlog import ANCHOR, MAX_ENTRY, EventLog, seg_path

RESEND = 2  # newest entries from before a boot sent again (a cut between log and queue)


def entry_hash(entry):
    # hash(entry) of the chain (eventlog.py): sha256 of the entry's bytes.
    return hashlib.sha256(entry).digest()


class LogError(ValueError):
    # The log on flash does not verify (edited, reordered, chain broken).
    pass


def decode_entry(entry):
    # -> [n, t, kind, severity, detail, prev]; LogError when malformed.
    try:
        e = cbor.loads(entry)
    except ValueError as ex:
        raise LogError("entry is not CBOR: %s" % ex)
    if (not isinstance(e, list) or len(e) != 6 or not isinstance(e[0], int) or e[0] < 1
            or not isinstance(e[5], (bytes, bytearray)) or len(e[5]) != 32
            or not isinstance(e[2], str)):
        raise LogError("entry is not [n, t, kind, severity, detail, prev]")
    return e


def read_frames(path):
    # Complete frames of one segment, in order: yields entry bytes; a torn
    # or oversized tail ends the segment.
    try:
        f = open(path, "rb")
    except OSError:
        return
    with f:
        while True:
            h = f.read(2)
            if len(h) < 2:
                return
            ln = (h[0] << 8) | h[1]
            if ln == 0 or ln > MAX_ENTRY:
                return
            e = f.read(ln)
            if len(e) < ln:
                return
            yield e


def load(directory, seg_size=2048, max_segs=4, io=None):
    # The EventLog in `directory` as it is on flash, verified: anchor, head,
    # kept segments, the first break (log.error), a torn tail.
    log = EventLog(directory, seg_size, max_segs, io)
    try:
        with open(log.dir + "/" + ANCHOR, "rb") as f:
            a = cbor.loads(f.read())
        log.anchor = (int(a[0]), bytes(a[1]))
    except OSError:
        pass
    except (ValueError, IndexError, TypeError):
        log.error = "anchor unreadable"
    log.head_n, log.head_h = log.anchor
    names = sorted([x for x in os.listdir(log.dir) if x.endswith(".log")])
    for i, name in enumerate(names):
        path = log.dir + "/" + name
        size = 0
        last = None
        for e in read_frames(path):
            size += 2 + len(e)
            _check(log, e)
            last = e
        if last is None:
            if size == 0 and i < len(names) - 1:
                log.io.remove(path)  # empty (or covered by the anchor)
                continue
        try:
            full = os.stat(path)[6]
        except OSError:
            full = size
        if full != size:
            log.torn = i == len(names) - 1
        log.segs.append([int(name[:8]), full, log.head_n, log.head_h])
    # Segments wholly covered by the anchor (a cut between the anchor
    # write and the delete) are deleted now.
    while log.segs and log.segs[0][2] <= log.anchor[0] and len(log.segs) > 1:
        log.io.remove(seg_path(log.dir, log.segs.pop(0)[0]))
    return log


def _check(log, e):
    try:
        d = decode_entry(e)
    except LogError as ex:
        log.error = log.error or str(ex)
        return
    n = d[0]
    if n <= log.anchor[0]:
        return  # covered by the anchor (rotation cut before the delete)
    if log.error is None:
        if n != log.head_n + 1:
            log.error = "entry %d follows %d" % (n, log.head_n)
        elif bytes(d[5]) != log.head_h:
            log.error = "entry %d does not chain onto %d" % (n, log.head_n)
    # New entries chain onto what is really on flash, so an edit stays
    # visible to the host instead of being papered over.
    log.head_n = n
    log.head_h = entry_hash(e)


def entries(log, after=0):
    # (n, entry bytes) of every kept entry of `log` with n > after, oldest first.
    for seg in log.segs:
        if seg[2] <= after:
            continue
        for e in read_frames(seg_path(log.dir, seg[0])):
            try:
                n = decode_entry(e)[0]
            except LogError:
                continue
            if n > after and n > log.anchor[0]:
                yield n, e


def verify(directory):
    # Re-read a log directory: (first kept n, head n, head hash), or LogError
    # naming the first break.
    log = load(directory)
    if log.error:
        raise LogError(log.error)
    return log.anchor[0] + 1, log.head_n, log.head_h


def resend(mon):
    # The newest entries from before this boot, sent again (a cut between log
    # and queue loses none). Called before anything new is logged, so records
    # are sealed in log order: an entry whose first sending a cut prevented
    # must not arrive after a newer one (the host names that a reorder).
    if mon.tel is not None:
        for n, e in entries(mon.log, mon.log.head_n - RESEND):
            mon.send(e)


def start(mon, reset_reason, boot_events):
    # Once per boot: count the boot, say if the log on flash did not verify,
    # then the boot and rollback events.
    mon.ps["boots"] = _count_boot(mon.board.mounts()["state"] + "/boots")
    if mon.log.error:
        events.emit("integrity_violation", "critical", {"what": "event log", "error": mon.log.error})
    events.emit("boot", "info", {"reset": reset_reason, "boot": mon.ps["boots"], "slot": mon.slot})
    rollbacks(boot_events)


def rollbacks(boot_events):
    # The loader's rollback/fallback records of this boot, as events.
    for ev in boot_events:
        t = ev.get("type") if isinstance(ev, dict) else None
        if t in ("rolled_back", "fallback"):
            events.emit("rollback", "warning", {"type": t, "version": str(ev.get("version"))})


def _count_boot(path):
    n = 0
    try:
        with open(path) as f:
            n = int(f.read())
    except (OSError, ValueError):
        pass
    n += 1
    try:
        write_atomic(path, str(n))
    except OSError:
        pass
    return n
