# Application entry point, started by the loader from the active slot.
# Runs the agent's main loop: watchdog, sensors, status, updates.
import gc

from board.compat import sleep_ms, ticks_ms, ticks_diff
from agent import config as agent_config
from agent.updates import UpdateAgent


class Agent:
    def __init__(self, board, slot, trial=False):
        self.board = board
        self.slot = slot
        self.trial = trial
        self.cfg = agent_config.load(board.mounts()["state"])
        self.started = ticks_ms()
        self.loops = 0
        self.update_state = {}
        self.updates = UpdateAgent(board, slot, trial, self.cfg, self._on_update)
        st = self.updates.installer.boot_state()
        # Events the loader recorded (rollbacks, fallbacks) are reported once.
        self.boot_events = st.get("events", [])[-4:]

    def _on_update(self, ev):
        self.update_state = ev
        self.report()

    def status(self):
        gc.collect()
        b = self.board
        return {
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
        }

    def report(self):
        self.board.report_status(self.status())

    def run(self, max_loops=0):
        b = self.board
        b.watchdog_start(self.cfg.get("watchdog_ms", 5000))
        print("medsentry agent %s: slot %s%s, reset %s" % (
            self.updates.version, self.slot, " (trial)" if self.trial else "", b.reset_reason()))
        every = self.cfg.get("status_every_ms", 1000)
        while True:
            b.watchdog_feed()
            self.updates.tick(b.time())
            self.report()
            self.loops += 1
            if max_loops and self.loops >= max_loops:
                return
            sleep_ms(every)


def run(board, slot, trial=False, max_loops=0):
    Agent(board, slot, trial).run(max_loops)
