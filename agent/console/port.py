# The login console on the UART of a locked (provisioned) board, serviced
# from the agent's loop: bytes waiting on the UART go to the shell, a bounded
# number per turn, so a flood never keeps the agent from feeding its watchdog.
# The operations the commands call are the agent's own (AgentOps).
import gc
import json

from agent.console.shell import Shell

BUDGET = 256  # bytes per service() call


class AgentOps:
    # What console commands may do: read status, ask for a self-test or an
    # update check, record a maintenance window, clear the telemetry queue.
    def __init__(self, agent):
        self.a = agent

    def table(self):
        return {
            "status": self.status, "version": self.version, "posture": self.posture,
            "events": self.events, "selftest": self.selftest,
            "check-updates": self.check_updates, "maint-window": self.maint_window,
            "export-logs": self.events, "clear-queue": self.clear_queue,
        }

    def version(self):
        u = self.a.updates
        return {"version": u.version, "model": u.model, "slot": self.a.slot}

    def status(self):
        st = self.a.status()
        keep = ("state", "slot", "version", "model", "reset_reason", "uptime_s", "heap_free", "pump", "recalled")
        return dict((k, st.get(k)) for k in keep)

    def posture(self):
        from agent.console import stats

        return {"console": stats.stats(self.a.board.mounts()["state"])}

    def events(self):
        try:
            from agent.security import events
        except ImportError:
            return []
        return [list(e) for e in events.pending()[-10:]]

    def selftest(self):
        from agent import selftest

        return {"failures": selftest.run(self.a.board)}

    def check_updates(self):
        self.a.updates.next_check = 0
        return {"update_check": "at the next tick"}

    def maint_window(self, minutes):
        m = int(minutes)
        if not 0 <= m <= 24 * 60:
            raise ValueError("minutes must be 0..1440")
        until = int(self.a.board.time()) + 60 * m
        from board.compat import write_atomic

        write_atomic(self.a.board.mounts()["state"] + "/console/maint.json", json.dumps({"until": until}))
        return {"maintenance_until": until}

    def clear_queue(self):
        tel = self.a.tel
        if tel is None or not hasattr(tel, "clear_queue"):
            raise ValueError("no telemetry queue on this board")
        return {"cleared": tel.clear_queue()}


class ConsolePort:
    def __init__(self, board, ops):
        import select

        self.inp, out = board.console()
        self._out = out
        self._poll = select.poll()
        self._poll.register(self.inp, select.POLLIN)
        state = board.mounts()["state"]
        try:
            import os

            os.mkdir(state + "/console")
        except OSError:
            pass
        self.shell = Shell(state, board.device_key(), board.time, ops, self.write)
        self.open = True

    def write(self, b):
        self._out.write(b)
        try:
            self._out.flush()
        except AttributeError:
            pass

    def service(self):
        n = 0
        while self.open and n < BUDGET and self._poll.poll(0):
            b = self.inp.read(1)
            if not b:
                self.open = False  # the line hung up
                break
            n += 1
            try:
                self.shell.feed(b)
            except (MemoryError, OSError, ValueError) as e:
                # The console never takes the agent down: drop the attempt.
                gc.collect()
                self.shell.abort("error: %s" % (e.__class__.__name__,))
        self.shell.poll()
        if n:
            gc.collect()
        return n
