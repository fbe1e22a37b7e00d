# Application entry point, started by the loader from the active slot.
#
# Without a device identity (/state/identity.json, written by factory
# provisioning, see agent/identity.py) the agent runs its plain loop:
# watchdog, status, update agent - exactly what an unprovisioned factory
# board does.
#
# With an identity it also runs the telemetry pipeline (agent/telemetry) on
# one asyncio event loop:
#   telemetry     sampler, publisher, command receiver, MQTT supervisor
#                 (agent/telemetry/pipeline.py)
#   housekeeping  the main coroutine, 1 Hz: feed the watchdog, tick the update
#                 agent, report the local status (board.report_status)
# The update agent's tick is synchronous and may block for seconds (TUF
# refresh, download, install). Its busy hooks and report callback keep the
# watchdog fed and keep sampling on schedule (records go to the flash queue;
# they are published once the tick returns). Every update report also leaves
# the device as a sealed status record: state "update" with an "update" map.
import gc

from board.compat import sleep_ms, ticks_ms, ticks_diff
from agent import config as agent_config
from agent import identity as agent_identity

MONITOR_WAIT_S = 120
# The security monitor is on by default where it fits beside telemetry and the
# update agent (a 384 KiB board); below this heap it is off unless the signed
# configuration turns it on (posture.on = 1), and the status says why.
MONITOR_MIN_HEAP = 300 * 1024  # usable heap: a --heap 320k board has 316 KiB


def heap_size():
    # The whole heap (free + allocated) on MicroPython; None on CPython (no
    # fixed heap). Here, not in board/compat.py: an app release must run on
    # the board firmware already in the field, which has no such helper.
    if not hasattr(gc, "mem_alloc"):
        return None
    return gc.mem_free() + gc.mem_alloc()


CONSOLE_POLL_MS = 20  # how often the loop services the login console (agent/console/port.py)


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
            self.ident = agent_identity.load(state, board)
        except agent_identity.IdentityError as e:
            self.telemetry_error = "identity: %s" % e
        # The egress allow-list, before any socket (board/netguard.py), on
        # a provisioned board: a factory board (no identity, no telemetry)
        # runs only its update client, and the flags code and names at boot
        # cost it the room its first update needs at 256k
        # (test_update_attacks.py::test_one_tampered_transfer_...).
        self.cmds = None
        core = None
        if self.ident is not None:
            from agent.security.commands_boot import arm_egress

            core = arm_egress(self.ident, self.cfg, state)
        if self.ident is not None:
            # The long-lived telemetry objects (code, flash queue, TLS context)
            # are allocated first, before the update agent: on a 256 KiB heap
            # the TLS handshake then still finds contiguous room.
            try:
                from agent.telemetry.pipeline import Telemetry

                self.tel = Telemetry(board, self.ident, self.cfg, None)
            except ValueError as e:  # pipeline.TelemetryError, bad identity data
                self.telemetry_error = str(e)
            except MemoryError:
                # Never let telemetry keep the agent (watchdog, updates) from running.
                self.telemetry_error = "out of memory starting telemetry"
            gc.collect()
        from agent.updates import UpdateAgent, SLICE_MS

        self.updates = UpdateAgent(board, slot, trial, self.cfg, self._on_update)
        if self.ident is not None:
            self.updates.device_id = self.ident["device_id"]
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
            # Signed commands on medsentry/<id>/cmd (agent/security): a
            # resident inbox, the verifier loaded per command; the command
            # policy rides on the update agent's TUF refresh.
            from agent.security.commands_inbox import CommandInbox

            self.cmds = CommandInbox(self, core)
            self.tel.sender.on_command = self.cmds.receive
            self.updates.target_hooks.append(self.cmds.fetch_policy)
        self.console = self._console()
        st = self.updates.installer.boot_state()
        # Events the loader recorded (rollbacks, fallbacks) are reported once.
        self.boot_events = st.get("events", [])[-4:]
        # The security monitor (event log, integrity scan, posture reports):
        # posture.on = 1 / 0 in the signed configuration turns it on / off;
        # without it, it runs on a provisioned board whose heap is
        # MONITOR_MIN_HEAP or more (on a 256 KiB heap it does not fit yet
        # beside telemetry and the update agent: README, Security monitoring). It starts after the first
        # TLS handshake (or MONITOR_WAIT_S without one): the handshake needs
        # contiguous heap. Events before it wait in agent/security/events.py's
        # bounded pending list.
        self.monitor = None
        self.monitor_error = None
        posture = self.cfg.get("posture")
        on = posture.get("on") if isinstance(posture, dict) else None
        heap = heap_size()
        if on == 0:
            self.monitor_error = "off: posture.on = 0 in config.json"
        elif on != 1 and self.tel is None:
            # A factory (unprovisioned) board: nothing to report to, and its
            # provisioning must not share the board with a scan.
            self.monitor_error = "off: not provisioned (posture.on = 1 turns it on)"
        elif on != 1 and heap is not None and heap < MONITOR_MIN_HEAP:
            self.monitor_error = "off: heap %d KiB < %d KiB (posture.on = 1 turns it on)" % (
                heap // 1024, MONITOR_MIN_HEAP // 1024)
        gc.collect()

    def _start_monitor(self):
        sup = self.tel.sup if self.tel is not None else None
        if (sup is not None and sup.connects == 0
                and ticks_diff(ticks_ms(), self.started) < MONITOR_WAIT_S * 1000):
            return
        self.monitor_error = ""
        try:
            from agent.security.monitor import Monitor

            self.monitor = Monitor(self.board, self.slot, self.cfg, self.tel, self.updates)
            self.monitor.boot(self.board.reset_reason(), self.boot_events)
        except (OSError, ValueError, MemoryError) as e:
            # Never let monitoring keep the agent (watchdog, updates) from running.
            self.monitor = None
            self.monitor_error = repr(e)[:120]
        gc.collect()

    def _console(self):
        # A locked (provisioned) board offers the login console on its UART
        # (agent/console); an open factory board keeps the ROM's REPL.
        lock_state = getattr(self.board, "lock_state", None)
        if lock_state is None or lock_state() == "open":
            return None
        try:
            from agent.console.port import ConsolePort

            return ConsolePort(self)
        except (OSError, ValueError, MemoryError) as e:
            print("console disabled:", e)
            return None

    def _on_update(self, ev):
        self.update_state = ev
        try:
            if getattr(self, "monitor", None) is not None:
                self.monitor.on_update(ev)
            if self.tel is not None:
                self.tel.update_status(ev)
                self.tel.keep_sampling()
        except MemoryError:
            # A report that finds no heap is dropped (the local status still
            # carries it): it must never take the agent down, and this is
            # called from the update agent's own out-of-memory handler.
            self.reports_dropped = getattr(self, "reports_dropped", 0) + 1
            gc.collect()
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
            "updates": "off" if self.updates.off else "on",
        }
        if self.ident is not None:
            st["device_id"] = self.ident["device_id"]
        if self.monitor is not None:
            st["security"] = self.monitor.status()
        elif self.monitor_error and self.monitor_error.startswith("off"):
            st["security"] = {"off": self.monitor_error[5:]}
        elif self.monitor_error:
            st["security"] = {"error": self.monitor_error}
        import sys

        ng = sys.modules.get("board.netguard")  # loaded once something armed or used it
        if ng is not None:
            st["egress"] = ng.stats()
        if self.cmds is not None:
            st["commands"] = self.cmds.stats_map()
        if self.console is not None and self.console.shell is not None:
            try:
                from agent.console import stats

                st["console"] = stats.stats(b.mounts()["state"], b.time())
            except MemoryError:
                st["console"] = {"error": "out of memory"}
        elif self.console is not None and self.console.stats is not None:
            st["console"] = self.console.stats
        if self.tel is not None:
            st["telemetry"] = self.tel.stats()
        elif self.telemetry_error:
            st["telemetry"] = {"error": self.telemetry_error}
        return st

    def report(self):
        try:
            self.board.report_status(self.status())
        except MemoryError:
            # A local status display is not worth the agent: skip this one.
            gc.collect()

    def run(self, max_loops=0):
        b = self.board
        b.watchdog_start(self.cfg.get("watchdog_ms", 5000))
        print("medsentry agent %s: slot %s%s, reset %s%s" % (
            self.updates.version, self.slot, " (trial)" if self.trial else "", b.reset_reason(),
            (", device " + self.ident["device_id"]) if self.ident else ""))
        if self.telemetry_error:
            print("telemetry disabled:", self.telemetry_error)
        if self.console is not None:
            self.console.start()
        if self.tel is not None:
            from board.compat import asyncio

            asyncio.run(self._run_async(asyncio, max_loops))
            return
        every = self.cfg.get("status_every_ms", 1000)
        while not self._housekeep(max_loops):
            if self.console is None:
                sleep_ms(every)
                continue
            t0 = ticks_ms()
            while ticks_diff(ticks_ms(), t0) < every:
                self.console.service()
                sleep_ms(CONSOLE_POLL_MS)

    def _housekeep(self, max_loops):
        # One turn of the 1 Hz loop: watchdog, update agent, (sampling that a
        # blocking update step delayed), local status. True when done.
        b = self.board
        b.watchdog_feed()
        if self.cmds is not None:
            self.cmds.tick()
        self.updates.tick(b.time())
        if self.tel is not None:
            self.tel.keep_sampling()
        if self.monitor is not None:
            self.monitor.tick()
        elif self.monitor_error is None:
            self._start_monitor()
        self.report()
        self.loops += 1
        return bool(max_loops) and self.loops >= max_loops

    async def _run_async(self, asyncio, max_loops):
        self.tel.start()
        every = self.cfg.get("status_every_ms", 1000)
        try:
            while not self._housekeep(max_loops):
                if self.console is None:
                    await asyncio.sleep(every / 1000)
                    continue
                t0 = ticks_ms()
                while ticks_diff(ticks_ms(), t0) < every:
                    self.console.service()
                    await asyncio.sleep(CONSOLE_POLL_MS / 1000)
        finally:
            await self.tel.shutdown()


def run(board, slot, trial=False, max_loops=0):
    Agent(board, slot, trial).run(max_loops)
