# agent/security/monitor.py on both runtimes: start (boot event on the flash
# log), the incremental scan run from tick() and its violation event, no scan
# while an update is in progress, and the cold modules released after use.
import os
import sys
import time

import devtest
from agent.security import events, logread
from agent.security.monitor import Monitor
from test_security_integrity import make_slot

COLD = ("agent.security.posture", "agent.security.logread")


class Board:
    def __init__(self, base, slot, loader):
        self.m = {"state": base + "/state", "data": base + "/data", "slot_a": slot, "loader": loader}
        for k in ("state", "data"):
            os.mkdir(self.m[k])

    def mounts(self):
        return self.m

    def time(self):
        return int(time.time())

    def reset_reason(self):
        return "power_on"


class Updates:
    version = "1.0.0"
    pending = None
    check_slices = 0


def kinds(mon):
    return [logread.decode_entry(e)[2] for n, e in logread.entries(logread.load(mon.log.dir))]


def start(cfg=None):
    devtest.reset_events()
    slot, loader = make_slot()
    board = Board(devtest.tmpdir(), slot, loader)
    mon = Monitor(board, "a", cfg or {"posture": {"scan_s": 1, "min_gap_s": 1}}, None, Updates())
    mon.boot("power_on", [{"type": "rolled_back", "version": "1.1.0"}])
    return mon, slot


def tick_until_scanned(mon, limit=200):
    for _ in range(limit):
        mon.tick()
        if mon.scanner is None and mon.scan is not None:
            return
    raise AssertionError("no complete scan in %d ticks" % limit)


def test_start_logs_boot_and_rollback_and_releases_cold_modules():
    mon, slot = start()
    assert kinds(mon) == ["boot", "rollback"]
    assert mon.status()["boots"] == 1 and mon.status()["head"] == 2
    for name in COLD:
        if name == "agent.security.logread":
            continue  # the test itself imports it
        assert name not in sys.modules, name
    devtest.reset_events()


def test_scan_from_ticks_then_a_changed_file_is_an_event():
    mon, slot = start()
    tick_until_scanned(mon)
    assert mon.scan["ok"] and mon.scan["files"] == 10, mon.scan  # 6 + 2 updater + 2 loader files
    assert mon.stats["posture_sent"] == 0 and mon.ps["at"] is not None  # no telemetry: built, not sent
    assert "agent.security.posture" not in sys.modules
    with open(slot + "/agent/m1.mpy", "r+b") as f:
        f.write(b"\x00\x01")
    time.sleep(1.1)  # scan_s
    mon.scan = None
    tick_until_scanned(mon)
    assert not mon.scan["ok"] and "~agent/m1.mpy" in mon.scan["bad"], mon.scan
    assert kinds(mon)[-1] == "integrity_violation" and mon.stats["integrity_violations"] == 1
    devtest.reset_events()


def test_posture_says_whether_updates_are_on():
    # (the report of an agent whose update agent has updates off says so)
    mon, slot = start()
    assert mon.report()["updates"] == "on"
    mon.updates.off = "no update URL (update.metadata_url in config.json)"
    assert mon.report()["updates"] == "off"
    devtest.reset_events()


def test_no_scan_while_an_update_is_in_progress():
    mon, slot = start()
    mon.updates.pending = {"version": "1.1.0"}
    for _ in range(5):
        mon.tick()
    assert mon.scanner is None and mon.scan is None
    mon.updates.pending = None
    tick_until_scanned(mon)
    assert mon.scan["ok"]
    devtest.reset_events()


class Sender:
    # Records what the monitor seals, in order (the telemetry sender's
    # enqueue_status: seq on success).
    def __init__(self):
        self.sent = []
        self.queue = type("Q", (), {"dropped": 0})()

    def enqueue_status(self, state, extra=None):
        self.sent.append(logread.decode_entry(extra["e"])[0])
        return len(self.sent)


class Tel:
    def __init__(self):
        self.sender = Sender()
        self.sup = None


def test_entry_cut_before_it_was_queued_is_sent_before_anything_newer():
    # A cut between the flash log and the queue: entry 3 is on flash, never sealed.
    # On the next boot it goes out again before the boot entry and before
    # events that waited for the log: sealing order stays log order (the host's
    # verifier names a late first arrival a reorder).
    devtest.reset_events()
    slot, loader = make_slot()
    board = Board(devtest.tmpdir(), slot, loader)
    cfg = {"posture": {"scan_s": 1, "min_gap_s": 1}}
    mon = Monitor(board, "a", cfg, Tel(), Updates())
    mon.boot("power_on", [{"type": "rolled_back", "version": "1.1.0"}])
    assert mon.tel.sender.sent == [1, 2]
    mon.log.append("update_step", "info", {"step": "installed"}, int(board.time()))  # the cut: never sent
    events.set_sink(None)
    devtest.reset_events()
    events.emit("tls_failure", "warning", {"why": "before the monitor started"})  # waits for the log
    mon = Monitor(board, "a", cfg, Tel(), Updates())
    mon.boot("watchdog", [])
    sent = mon.tel.sender.sent
    assert sent[:2] == [2, 3] and sent == sorted(sent) and sent[-1] == 5, sent
    devtest.reset_events()


class Ag:
    # The agent as the console's AgentOps sees it (monitor, board).
    def __init__(self, mon):
        self.monitor = mon
        self.board = mon.board


def test_console_events_and_export_logs_read_the_flash_log():
    # The real operations behind the viewer's `events` and the technician's
    # `export-logs` (they crashed the agent: a TypeError out of the console).
    import json

    from agent.console.shell import AgentOps

    mon, slot = start()
    ops = AgentOps(Ag(mon)).table()
    res = ops["events"]()
    assert [e["kind"] for e in res["entries"]] == ["boot", "rollback"], res
    assert res["entries"][0]["n"] == 1 and res["pending"] == 0
    assert ops["export-logs"]() == res
    json.dumps(res)
    # monitor off (a 256 KiB board): read from flash, events waiting counted
    events.set_sink(None)
    events.emit("console_login_failed", "warning", {"user": "x"})
    ag = Ag(mon)
    ag.monitor = None
    res = AgentOps(ag).table()["events"]()
    assert [e["kind"] for e in res["entries"]] == ["boot", "rollback"] and res["pending"] == 1
    devtest.reset_events()


def test_a_faulty_console_operation_ends_the_command_not_the_agent():
    from agent.console.shell import Shell

    out = []
    sh = Shell(devtest.tmpdir(), b"k" * 32, lambda: 0, {"events": lambda: [].missing}, out.append)
    sh._run("events", [])
    assert b"error: events failed (AttributeError)" in b"".join(out)


def test_tls_failure_reason_names_the_fault_not_the_wrappers():
    # The error the MicroPython VM gives when the broker's certificate is not the
    # fleet's (tests/e2e/test_security_tuf_alert.py prints it): the first 48
    # characters were all wrapper, the event said nothing of the certificate.
    from agent.security.monitor import TLS_WORDS
    from agent.security.posture import tls_reason as reason

    def tls_reason(text):
        return reason(text, TLS_WORDS)  # as the monitor calls it

    vm = "MQTTTransportError(\"write failed: ValueError('\\\\nThe certificate is not correctly signed by the trusted CA\\\\n',)\",)"
    assert tls_reason(vm) == "The certificate is not correctly signed by the t"
    assert "Certificate verification failed" in tls_reason("OSError(-9984, 'X509 - Certificate verification failed')")
    assert tls_reason("OSError(113,)") is None
    assert tls_reason("SSL handshake failed") == "SSL handshake failed"


def test_posture_gives_the_console_modules_back_unless_a_session_has_them():
    # posture.console() imported agent.console.stats for the report and left the
    # console package resident after every report (3.3 KiB of heap).
    from agent.security import posture

    for k in [k for k in sys.modules if k == "agent.console" or k.startswith("agent.console.")]:
        del sys.modules[k]
    state = devtest.tmpdir()
    assert posture.console(state) is not None
    assert [k for k in sys.modules if k.startswith("agent.console")] == []
    import agent.console.stats  # a console session holds the package

    assert posture.console(state) is not None
    assert "agent.console.stats" in sys.modules
