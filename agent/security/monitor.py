# The device's security agent (agent/security/): events (events.py) and their
# tamper-evident log (eventlog.py, logread.py), posture reports and the
# integrity scan (monitor.py, posture.py), persistent security flags
# (flags.py), signed commands (commands_inbox.py: the resident inbox;
# commands.py: verification; commands_run.py: execution). The egress guard
# lives in the board HAL (board/netguard.py). No __init__.py: a namespace
# package (every device file costs a flash block).
#
# The security monitor of the agent: wires events (agent/security/events.py)
# to the flash event log (eventlog.py) and to sealed "event" records, runs the
# incremental integrity scan and sends sealed "posture" records at start,
# every posture.period_s and on any change. Watches, once per tick: clock
# jumps, telemetry queue drops, MQTT TLS failures. Everything is bounded;
# nothing here may stop the agent.
#
# Heap (issue 12, round 3: ~12 KiB resident on a 256 KiB board): this module,
# events.py and eventlog.py's append path are all that stays loaded. The cold
# half lives in posture.py (boot work, the scanner, posture fields, sending a
# report) and logread.py (reading the log back); they are imported on use and
# released after (agent.release_modules): at boot, for the ticks a
# scan runs, for the tick a report is built. Scans and reports wait while an
# update is in progress (a check or an install in slices: its code is on the
# heap then) and until the first TLS handshake is done (or SCAN_WAIT_S
# without one): the handshake needs contiguous heap. On a heap too full to
# load them, the scan/report is counted in memory_errors and retried later.
import gc

from board.compat import ticks_ms, ticks_diff
from agent import config as agent_config
from agent.security import events

LAZY = ("agent.security.posture", "agent.security.logread", "agent.security.flags")
SCAN_WAIT_S = 120
DEFAULTS = {"on": 0, "period_s": 300, "scan_s": 60, "budget_ms": 30, "min_gap_s": 10, "clock_jump_s": 120}
TLS_WORDS = ("cert", "ssl", "tls", "handshake", "verify")
UPDATE_STEPS = ("available", "installed", "activated", "confirmed", "rolled_back", "rejected", "refused",
                "check_failed", "download_interrupted")


def tls_words(text):
    t = text.lower()
    for w in TLS_WORDS:
        if w in t:
            return True
    return False


class Monitor:
    def __init__(self, board, slot, cfg, tel=None, updates=None):
        self.board = board
        self.slot = slot
        self.tel = tel
        self.updates = updates
        self.cfg = agent_config.section(cfg, "posture", DEFAULTS)
        self.scanner = None
        self.scan = None  # result of the last complete scan
        self.scan_started = None
        self.started = ticks_ms()
        self.stats = {"posture_sent": 0, "events_logged": 0, "events_sent": 0, "log_errors": 0,
                      "integrity_violations": 0, "memory_errors": 0, "scan_max_ms": 0, "heap_low": None}
        # posture.py's state: "at" (ticks of the last report), "scan" (the
        # scan result it looked at), "key", "cert_exp", "bad", "boots",
        # "check_ok" (board time of the last verified update check).
        self.ps = {"at": None, "scan": None, "boots": 0}
        self._wall = None  # (board time, ticks) for clock jumps
        self._dropped = tel.sender.queue.dropped if tel is not None else 0
        self._tls_err = None
        from agent.security import logread

        self.log = logread.load(board.mounts()["data"] + "/events")
        logread.resend(self)   # before the events that waited for the log (set_sink)
        events.set_sink(self._sink)

    def boot(self, reset_reason, boot_events=()):
        # Once per boot: boot count, log check, boot/rollback events.
        from agent.security import logread

        try:
            logread.start(self, reset_reason, boot_events)
        finally:
            logread = None
            self._release()

    # -- events

    def _sink(self, kind, severity, detail):
        try:
            n, e, h = self.log.append(kind, severity, detail, int(self.board.time()))
        except OSError:
            self.stats["log_errors"] += 1
            raise
        self.stats["events_logged"] += 1
        self.send(e)

    def send(self, entry):
        if self.tel is not None and self.tel.sender.enqueue_status("event", extra={"e": entry}) is not None:
            self.stats["events_sent"] += 1

    def on_update(self, ev):
        step = ev.get("step")
        if step in ("up_to_date", "refused", "available"):
            self.ps["check_ok"] = self.board.time()  # the repository answered and verified
        if step not in UPDATE_STEPS:
            return
        reason = str(ev.get("reason") or "")
        version = str(ev.get("version"))
        if step in ("check_failed", "download_interrupted") and tls_words(reason):
            events.emit("tls_failure", "warning", {"peer": "update", "reason": reason})
        if step == "rejected" and reason.startswith("repository"):
            events.emit("tuf_failure", "warning", {"reason": reason})
        bad = step in ("rejected", "rolled_back")
        events.emit("update_step", "warning" if bad else "info", {"step": step, "version": version, "reason": reason})
        if step == "rolled_back":
            events.emit("rollback", "warning", {"version": version})

    # -- the tick

    def tick(self):
        # Never lets monitoring stop the agent: out of memory in a scan step
        # or a report (a fragmented heap) is counted; the scan starts again later.
        try:
            self._tick()
        except MemoryError:
            # No room to load the scanner/report code now: try again after
            # scan_s (a scan) and min_gap_s (a report), not every tick.
            self.stats["memory_errors"] += 1
            if self.scanner is not None:
                self.scanner.abort()
            self.scanner = None
            self._release()
            t = ticks_ms()
            self.scan_started = t
            self.ps["at"] = t
            self.ps["scan"] = 0  # a report is still due: after min_gap_s

    def _release(self):
        # Drop the cold modules, unless a scan in progress still uses them
        # (a release then would load a second copy at the next step).
        if self.scanner is None:
            from agent import release_modules

            release_modules(LAZY)

    def _tick(self):
        now = self.board.time()
        t = ticks_ms()
        self._watch(now, t)
        # An update check or install in progress (over several ticks) has
        # its code on the heap: no scan step and no report then.
        u = self.updates
        busy = u is not None and (getattr(u, "pending", None) is not None or getattr(u, "check_slices", 0) > 0)
        due = not busy and self.scanner is None
        if due and self.scan_started is not None:
            due = ticks_diff(t, self.scan_started) >= self.cfg["scan_s"] * 1000
        elif due and self.tel is not None:
            sup = self.tel.sup
            due = (sup is not None and sup.connects > 0) or ticks_diff(t, self.started) >= SCAN_WAIT_S * 1000
        if due or self.scanner is not None:
            from agent.security import posture

            try:
                posture.scan_step(self, t)
            finally:
                posture = None
                self._release()
        f = gc.mem_free() if hasattr(gc, "mem_free") else None
        low = self.stats["heap_low"]
        if f is not None and (low is None or f < low):
            self.stats["heap_low"] = f
        if busy:
            return
        at = self.ps["at"]
        gap = None if at is None else ticks_diff(t, at)
        if gap is not None and (gap < self.cfg["min_gap_s"] * 1000 or (
                gap < self.cfg["period_s"] * 1000 and self.scan is self.ps["scan"])):
            return  # too soon, or nothing new since the last report (cheap checks first)
        self.report(now, gap)

    def _watch(self, now, t):
        if self._wall is not None:
            w, tk = self._wall
            drift = (now - w) - ticks_diff(t, tk) / 1000
            if drift > self.cfg["clock_jump_s"] or drift < -self.cfg["clock_jump_s"]:
                events.emit("clock_jump", "warning", {"by_s": int(drift)})
        self._wall = (now, t)
        if self.tel is None:
            return
        d = self.tel.sender.queue.dropped
        if d > self._dropped:
            events.emit("queue_drop", "warning", {"dropped": d - self._dropped, "total": d})
            self._dropped = d
        sup = self.tel.sup
        err = sup.last_error if sup is not None else None
        if err is not None and err is not self._tls_err:
            self._tls_err = err
            text = repr(err)
            if not tls_words(text):
                return  # not a TLS failure (a refused or lost connection): no cold code loaded
            from agent.security import posture  # cold: only for a new TLS error

            try:
                why = posture.tls_reason(text, TLS_WORDS)
            finally:
                posture = None
                self._release()
            if why is not None:
                events.emit("tls_failure", "warning", {"peer": "broker", "reason": why})

    # -- posture

    def report(self, now=None, gap=None):
        # Build and send one posture record (now, with gap None: also the
        # `report-now` command); -> the record, or None when nothing changed.
        from agent.security import posture

        try:
            return posture.report(self, self.board.time() if now is None else now, gap)
        finally:
            posture = None
            self._release()

    def status(self):
        s = dict(self.stats)
        s["boots"] = self.ps["boots"]
        s["head"] = self.log.head_n
        s["integrity_ok"] = None if self.scan is None else self.scan["ok"]
        return s
