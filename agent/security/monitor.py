# The security monitor of the agent: wires events (agent/security/events.py)
# to the flash event log (eventlog.py) and to sealed "event" records, runs the
# incremental integrity scan (posture.Scanner) and sends sealed "posture"
# records (posture.py) at start, every posture.period_s and on any change.
# Watches, once per tick: clock jumps, telemetry queue drops, MQTT TLS
# failures. Everything is bounded; nothing here may stop the agent.
import gc

from board.compat import ticks_ms, ticks_diff, write_atomic
from agent import config as agent_config
from agent.security import events
from agent.security.eventlog import EventLog

# Loaded only while used, then released (their bytecode lives on the heap on
# the unix VM): the scanner while a scan runs, the posture fields while a
# report is built. Scans start once the first TLS handshake is done (or
# after SCAN_WAIT_S without one): the handshake needs contiguous heap. On a
# heap too full to load them, the scan/report is counted in memory_errors
# and retried after scan_s; the agent itself runs on.
LAZY = ("agent.security.posture",)
# The monitor runs on a heap of at least this size (the demo boards' 384 KiB):
# beside the TUF client, a live TLS session and the telemetry pipeline a
# 256 KiB heap has no room left for it. Below, the agent runs without it and
# says so in its status (events wait in events.py's bounded pending list).
MIN_HEAP = 320 * 1024


def heap_too_small():
    if not hasattr(gc, "mem_free"):
        return False  # CPython
    return gc.mem_free() + gc.mem_alloc() < MIN_HEAP
SCAN_WAIT_S = 120

DEFAULTS = {"period_s": 300, "scan_s": 60, "budget_ms": 30, "min_gap_s": 10, "clock_jump_s": 120}
RESEND = 2  # newest entries sent again at boot (a cut between log and queue)
UPDATE_STEPS = ("available", "installed", "activated", "confirmed", "rolled_back", "rejected", "refused",
                "check_failed", "download_interrupted")
TLS_WORDS = ("cert", "ssl", "tls", "handshake", "verify")


class Monitor:
    def __init__(self, board, slot, cfg, tel=None, updates=None):
        self.board = board
        self.slot = slot
        self.tel = tel
        self.updates = updates
        m = board.mounts()
        self.state_dir = m["state"]
        self.data_dir = m["data"]
        self.cfg = agent_config.section(cfg, "posture", DEFAULTS)
        self.log = EventLog(self.data_dir + "/events")
        self.slot_path = m["slot_" + slot]
        self.loader_path = m.get("loader")
        self.scanner = None
        self.scan = None  # result of the last complete scan
        self.scan_started = None
        self.scan_max_ms = 0
        self.started = ticks_ms()
        self.stats = {"posture_sent": 0, "events_logged": 0, "events_sent": 0, "log_errors": 0,
                      "integrity_violations": 0}
        self.boots = self._count_boot()
        self.low_heap = None
        self.last_posture = None  # ticks of the last report
        self.last_key = None
        self._reported_scan = None
        self._wall = None  # (board time, ticks) for clock jumps
        self._dropped = tel.sender.queue.dropped if tel is not None else 0
        self._tls_err = None
        self._bad = ()
        self.last_check_ok = None
        self.posture = None
        self.cert_exp = None
        events.set_sink(self._sink)
        if self.log.error:
            events.emit("integrity_violation", "critical", {"what": "event log", "error": self.log.error})
        self._resend()

    def _count_boot(self):
        path = self.state_dir + "/boots"
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

    def _resend(self):
        if self.tel is None:
            return
        head = self.log.head_n
        for n, e in self.log.entries(head - RESEND):
            self._send(e)

    # -- events

    def _sink(self, kind, severity, detail):
        try:
            n, e, h = self.log.append(kind, severity, detail, int(self.board.time()))
        except OSError:
            self.stats["log_errors"] += 1
            raise
        self.stats["events_logged"] += 1
        self._send(e)

    def _send(self, entry):
        if self.tel is not None and self.tel.sender.enqueue_status("event", extra={"e": entry}) is not None:
            self.stats["events_sent"] += 1

    def boot(self, reset_reason, boot_events):
        events.emit("boot", "info", {"reset": reset_reason, "boot": self.boots, "slot": self.slot})
        for ev in boot_events:
            t = ev.get("type") if isinstance(ev, dict) else None
            if t in ("rolled_back", "fallback"):
                events.emit("rollback", "warning", {"type": t, "version": str(ev.get("version"))})

    def on_update(self, ev):
        step = ev.get("step")
        if step in ("up_to_date", "refused", "available"):
            self.last_check_ok = self.board.time()  # the repository answered and verified
        if step not in UPDATE_STEPS:
            return
        reason = str(ev.get("reason") or "")
        if step in ("check_failed", "download_interrupted") and any(w in reason.lower() for w in TLS_WORDS):
            events.emit("tls_failure", "warning", {"peer": "update", "reason": reason})
        if step == "rejected" and reason.startswith("repository"):
            events.emit("tuf_failure", "warning", {"reason": reason})
        events.emit("update_step", "warning" if step in ("rejected", "rolled_back") else "info",
                    {"step": step, "version": str(ev.get("version")), "reason": reason})
        if step == "rolled_back":
            events.emit("rollback", "warning", {"version": str(ev.get("version"))})

    # -- the tick

    def tick(self):
        # Never lets monitoring stop the agent: out of memory in a scan step
        # (a fragmented heap) is counted and the scan started again later.
        try:
            self._tick()
        except MemoryError:
            self.stats["memory_errors"] = self.stats.get("memory_errors", 0) + 1
            if self.scanner is not None:
                self.scanner.abort()
            self.scanner = None
            self._release()

    def _release(self):
        from agent.updates import release_modules

        release_modules(LAZY)

    def _tick(self):
        now = self.board.time()
        t = ticks_ms()
        self._watch(now, t)
        if self.scanner is None and self._scan_due(t):
            self.scan_started = t
            from agent.security.posture import Scanner

            self.scanner = Scanner(self.slot_path, self.loader_path)
        if self.scanner is not None:
            done = self.scanner.step(self.cfg["budget_ms"])
            if self.scanner.max_step_ms > self.scan_max_ms:
                self.scan_max_ms = self.scanner.max_step_ms
            if done:
                self.scan = self.scanner.result
                self.scanner = None
                self._release()
                self._scanned()
        self._heap()
        self._maybe_report(now, t)

    def _scan_due(self, t):
        if self.scan_started is not None:
            return ticks_diff(t, self.scan_started) >= self.cfg["scan_s"] * 1000
        sup = self.tel.sup if self.tel is not None else None
        return (self.tel is None or (sup is not None and sup.connects > 0)
                or ticks_diff(t, self.started) >= SCAN_WAIT_S * 1000)

    def _scanned(self):
        r = self.scan
        bad = tuple(r["bad"])
        if bad and bad != self._bad:
            self.stats["integrity_violations"] += 1
            events.emit("integrity_violation", "critical", {"files": r["nbad"], "first": bad[0]})
        self._bad = bad

    def _heap(self):
        f = gc.mem_free() if hasattr(gc, "mem_free") else None
        if f is not None and (self.low_heap is None or f < self.low_heap):
            self.low_heap = f

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
            if any(w in text.lower() for w in TLS_WORDS):
                events.emit("tls_failure", "warning", {"peer": "broker", "reason": text[:48]})

    # -- posture

    def build(self, now):
        from agent.security import posture

        try:
            return self._build(now, posture)
        finally:
            posture = None
            self._release()

    def _build(self, now, posture):
        u = self.updates
        if self.cert_exp is None and self.tel is not None:
            self.cert_exp = posture.cert_not_after(self.tel.ident.get("cert_der") or b"")
        p = {"version": u.version if u is not None else None, "slot": self.slot, "boots": self.boots,
             "period_s": self.cfg["period_s"], "reset": self.board.reset_reason(), "integrity": self.scan,
             "config": posture.file_digest(self.state_dir + "/config.json"), "cert_exp": self.cert_exp,
             "heap": [posture.heap_free(), self.low_heap], "flash_free": posture.flash_free(self.data_dir),
             "ev": [self.log.head_n, self.log.head_h], "ev_dropped": events.stats["dropped"]}
        tuf = getattr(u, "tuf_info", None)
        if tuf:
            p["tuf"] = tuf
        if self.tel is not None:
            q = self.tel.sender.queue
            p["queue"] = [len(q), q.dropped]
        eps, blocked = posture.egress()
        if eps is not None:
            p["egress"] = eps
            p["blocked"] = blocked
        con = posture.console(self.state_dir)
        if con is not None:
            p["console"] = con
        if self.last_check_ok is not None:
            p["since_check_s"] = int(now - self.last_check_ok)
        p["key"] = posture.stable_key(p)
        return p

    def _maybe_report(self, now, t):
        gap = None if self.last_posture is None else ticks_diff(t, self.last_posture)
        if gap is not None and gap < self.cfg["min_gap_s"] * 1000:
            return
        if gap is not None and gap < self.cfg["period_s"] * 1000 and self.scan is self._reported_scan:
            return  # nothing new since the last report (cheap check first)
        p = self.build(now)
        key = p.pop("key")
        if gap is not None and key == self.last_key and gap < self.cfg["period_s"] * 1000:
            return
        self._reported_scan = self.scan
        self.report(p)
        self.last_key = key
        self.last_posture = t

    def report(self, p=None):
        # Send one posture record now (also the `report-now` command).
        if p is None:
            p = self.build(self.board.time())
            p.pop("key")
        self.posture = p
        gc.collect()
        if self.tel is not None and self.tel.sender.enqueue_status("posture", extra=p) is not None:
            self.stats["posture_sent"] += 1
        return p

    def status(self):
        s = {}
        for k in self.stats:
            s[k] = self.stats[k]
        s["boots"] = self.boots
        s["head"] = self.log.head_n
        s["integrity_ok"] = None if self.scan is None else self.scan["ok"]
        s["scan_max_ms"] = self.scan_max_ms
        return s
