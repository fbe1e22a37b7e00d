# The login console on the UART of a locked (provisioned) board, serviced
# from the agent's loop (agent/main.py). Imported only on locked boards: an
# open factory board keeps the ROM's REPL and pays no heap for this.
import gc

from board.compat import ticks_ms, ticks_diff

CONSOLE_BUDGET = 256  # UART bytes handled per turn: a flood never starves the loop
CONSOLE_UNLOAD_MS = 5000  # an idle login prompt unloads the shell after this
CONSOLE_BANNER = b"\r\nmedsentry maintenance console\r\nlogin: "


class ConsolePort:
    # The login console on the UART of a locked (provisioned) board, serviced
    # from the agent's loop. The shell (agent/console/shell.py) is imported at
    # the first byte that arrives: an unused console costs no heap.
    def __init__(self, agent):
        import select

        self.agent = agent
        self.inp, self.out = agent.board.console()
        self.poller = select.poll()
        self.poller.register(self.inp, select.POLLIN)
        self.shell = None
        self.session = False  # a user is (or was, until released) logged in
        self.loaded = []  # modules the shell imported: released after a session
        self.stats = None
        self.last = ticks_ms()
        self.open = True

    def write(self, b):
        self.out.write(b)
        flush = getattr(self.out, "flush", None)  # a pty stream; a UART has none
        if flush is not None:
            flush()

    def start(self):
        self.write(CONSOLE_BANNER)

    def _shell(self):
        import sys

        gc.collect()  # the shell's code goes into the lowest free holes
        before = set(sys.modules)
        try:
            from agent.console.shell import Shell, AgentOps
        finally:
            # What the shell brought in is released when the session ends, or
            # at once if the import ran out of memory (agent.security.events
            # stays: it holds unsent security events).
            self.loaded = [m for m in sys.modules if m not in before and not m.startswith("agent.security")]
            before = None
        b = self.agent.board
        state = b.mounts()["state"]
        try:
            import os

            os.mkdir(state + "/console")
        except OSError:
            pass
        a = self.agent
        device = None
        if a.ident is not None:  # for one-time unlock tokens (board clock unset)
            device = (a.ident["device_id"], a.updates.model)
        return Shell(state, b.device_key(), b.time, AgentOps(a).table(), self.write, device=device)

    def service(self):
        n = 0
        while self.open and n < CONSOLE_BUDGET and self.poller.poll(0):
            c = self.inp.read(1)
            if not c:
                self.open = False  # the line hung up
                break
            n += 1
            try:
                if self.shell is None:
                    self.shell = self._shell()
                self.shell.feed(c)
            except (MemoryError, OSError, ValueError, TypeError, KeyError, IndexError, AttributeError) as e:
                # The console never takes the agent down: drop the attempt.
                gc.collect()
                if self.shell is not None:
                    self.shell.abort("error: %s" % (e.__class__.__name__,))
                else:
                    # The shell could not load: say so once per turn (never a
                    # silent console) and drop the rest of the input.
                    self.write(b"\r\nconsole unavailable (%s), try again\r\nlogin: " % e.__class__.__name__.encode())
                    if self.loaded:
                        self._unload()
                    break
        if n:
            self.last = ticks_ms()
        sh = self.shell
        if sh is not None:
            sh.poll()
            if sh.stage == "shell":
                self.session = True
            elif not sh.line and sh.stage == "user" and (
                    self.session or ticks_diff(ticks_ms(), self.last) > CONSOLE_UNLOAD_MS):
                self._unload()  # the session ended (logout, idle timeout) or the prompt is quiet
        if n:
            gc.collect()
        return n

    def _unload(self):
        # Give the shell's heap back to the agent (updates need it); keep the
        # counters for the status report. The next byte imports it again.
        from agent import release_modules

        self.shell = None
        b = self.agent.board
        try:
            from agent.console.stats import stats

            self.stats = stats(b.mounts()["state"], b.time())
        except MemoryError:
            pass  # the last counters stay
        stats = None
        self.session = False
        release_modules(self.loaded + ["agent.console"])
        self.loaded = []
