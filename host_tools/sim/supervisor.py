"""The supervisor of one simulated board: the board's power, reset line,
watchdog and UART, played by a host process.

It owns two pty pairs and bridges them like a null-modem cable: the VM runs
on the first pair's slave (its controlling terminal, so Ctrl-C interrupts
the application), users open the second pair's slave path (the "serial
port" printed by `medsentry sim start`). It restarts the VM on the same flash
image after a reset, a watchdog expiry or a power cut, and records why.

Run as `python -m host_tools.sim.supervisor BOARD_DIR` (done by
host_tools.sim.boards.start). Control requests arrive as JSON lines on the
unix socket BOARD_DIR/ctl.sock.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import pty
import select
import signal
import socket
import subprocess
import sys
import termios
import time
import tty
from pathlib import Path

from board.sim.simboard import EXIT_FLASH_ERROR, EXIT_RESET, EXIT_SOFT_RESET, EXIT_SOFT_RESET_RAW
from host_tools import mpvm
from host_tools.sim.inject import PlanError, UartInjector

CONSOLE_LOG_MAX = 1024 * 1024
RESTART_DELAY = 0.2
# A board whose VM crashes this often within this window is halted (powered
# off, the reason kept) instead of rebooting for ever; watchdog, power cut and
# reset restarts do not count.
CRASH_LOOP_N = 5
CRASH_LOOP_WINDOW_S = 30.0


def _set_nonblock(fd: int) -> None:
    fl = fcntl.fcntl(fd, fcntl.F_GETFL)
    fcntl.fcntl(fd, fcntl.F_SETFL, fl | os.O_NONBLOCK)


def write_text_atomic(path: Path, text: str) -> None:
    """Whole or not at all, for a reader that may look at any moment (the owner's
    status reads, the board's check of the power-cut arm file before every write)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_json_atomic(path: Path, data: dict) -> None:
    write_text_atomic(path, json.dumps(data, indent=1))


class Supervisor:
    def __init__(self, board_dir: Path):
        self.dir = board_dir
        self.cfg = json.loads((board_dir / "board.json").read_text())
        self.io = board_dir / "io"
        self.io.mkdir(exist_ok=True)
        self.proc: subprocess.Popen | None = None
        self.boots = 0
        self.resets: dict[str, int] = {}
        self.next_reason = "power_on"
        self.next_mode = "normal"
        self.next_cut_at = 0
        self.wdt_ms = 0
        self.wdt_last = 0.0
        self.device: dict = {}
        # Distinct update steps the device reported, oldest first (bounded).
        self.update_history: list[dict] = []
        self.state = "starting"
        self.error: str | None = None
        self.running = True
        self.kill_reason: str | None = None
        self.crashes: list[float] = []  # monotonic times of recent crash exits
        self.stage: str | None = None
        self.inject = UartInjector()
        self._open_ptys()
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.ctl_path = board_dir / "ctl.sock"
        if self.ctl_path.exists():
            self.ctl_path.unlink()
        self.ctl = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.ctl.bind(str(self.ctl_path))
        self.ctl.listen(4)
        self.log = open(board_dir / "console.log", "ab")

    # -- pty bridge -----------------------------------------------------------
    def _open_ptys(self) -> None:
        self.board_master, self.board_slave = pty.openpty()
        self.user_master, self.user_slave = pty.openpty()
        tty.setraw(self.user_slave)
        # Board side: raw, and Ctrl-C does NOT signal. Only the board's own
        # console turns ISIG on, while the application of an open (factory)
        # board runs; every power-up starts with it off again (_power_up_uart).
        tty.setraw(self.board_slave)
        self.port = os.ttyname(self.user_slave)
        # A stable name for the board's UART, as udev gives a real adapter
        # (/dev/serial/by-id/...): BOARD_DIR/uart -> /dev/pts/N. mpremote reads
        # a /dev/pts/ path with no timeout at all (its QEMU special case), so
        # on a locked board it waits for ever and never prints the board's
        # "console locked" line; through this link it treats the port as the
        # serial adapter it stands for: its 10 s raw-REPL timeout applies and
        # it prints what the board answered (tests/e2e/test_console_login.py).
        self.uart_link = self.dir / "uart"
        tmp = self.dir / "uart.tmp"
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        os.symlink(self.port, tmp)
        os.replace(tmp, self.uart_link)
        _set_nonblock(self.board_master)
        _set_nonblock(self.user_master)

    def _pump_bytes(self, src: int, dst: int, log: bool) -> None:
        try:
            data = os.read(src, 4096)
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.EIO):
                return
            raise
        if log and data:
            if self.log.tell() > CONSOLE_LOG_MAX:
                self.log.truncate(0)
                self.log.seek(0)
            self.log.write(data)
            self.log.flush()
        try:
            os.write(dst, data)
        except OSError as e:
            # Nobody reading the other end and its buffer full: a UART
            # with no listener loses bytes.
            if e.errno not in (errno.EAGAIN, errno.EIO):
                raise

    def _crash_loop(self) -> bool:
        # Record a crash; on a crash loop halt the board with the VM's last
        # error line from console.log as the reason. True when halted.
        now = time.monotonic()
        self.crashes = [t for t in self.crashes if now - t < CRASH_LOOP_WINDOW_S] + [now]
        if len(self.crashes) < CRASH_LOOP_N:
            return False
        self.state = "halted"
        self.error = (f"crash loop: {len(self.crashes)} crashes within {CRASH_LOOP_WINDOW_S:.0f} s; "
                      f"last: {self._last_error_line()}")
        self.proc = None
        self.running = False
        self._save_status()
        return True

    def _last_error_line(self) -> str:
        try:
            with open(self.dir / "console.log", "rb") as f:
                f.seek(max(0, f.seek(0, os.SEEK_END) - 4096))
                tail = f.read().decode(errors="replace")
        except OSError:
            return "(no console log)"
        lines = [ln.strip() for ln in tail.splitlines() if ln.strip()]
        for ln in reversed(lines):
            if "Error" in ln or "Exception" in ln:
                return ln[:200]
        return lines[-1][:200] if lines else "(the VM printed nothing)"

    # -- the VM ----------------------------------------------------------------
    def _power_up_uart(self) -> None:
        # A reset clears the UART: no Ctrl-C signalling (the previous VM may
        # have left ISIG on), and bytes received before power-up are gone.
        attr = termios.tcgetattr(self.board_slave)
        attr[3] &= ~termios.ISIG
        termios.tcsetattr(self.board_slave, termios.TCSANOW, attr)
        termios.tcflush(self.board_slave, termios.TCIFLUSH)

    def _spawn(self) -> None:
        fw = self.cfg["firmware"]
        self._power_up_uart()
        env = mpvm.vm_env(
            [fw],
            {
                "MEDSENTRY_IMAGE": str(self.dir / "flash.img"),
                "MEDSENTRY_IO": str(self.io),
                "MEDSENTRY_CTL_PORT": str(self.udp.getsockname()[1]),
                "MEDSENTRY_RESET_REASON": self.next_reason,
                "MEDSENTRY_BOOT_MODE": self.next_mode,
                "MEDSENTRY_UID": self.cfg["uid"],
                "MEDSENTRY_POWERCUT_AT": str(self.next_cut_at),
                "MEDSENTRY_BOARD_NAME": self.cfg["name"],
                "MEDSENTRY_FUSES": str(self.dir / "fuses"),
            },
        )
        slave = self.board_slave

        def preexec() -> None:
            os.setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        cmd = mpvm.vm_command(Path(fw) / "rom.py", heap=self.cfg["heap"])
        self.proc = subprocess.Popen(
            cmd, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=str(self.dir),
            preexec_fn=preexec, close_fds=True,
        )
        self.inject.on_event("spawn", time.monotonic())
        self.stage = "spawn"
        self.boots += 1
        self.resets[self.next_reason] = self.resets.get(self.next_reason, 0) + 1
        self.last_reason = self.next_reason
        self.next_reason, self.next_mode, self.next_cut_at = "crash", "normal", 0
        self.state = "running"
        self.device = {}
        self._save_status()

    def _kill_vm(self, reason: str) -> None:
        if self.proc and self.proc.poll() is None:
            self.kill_reason = reason
            self.proc.kill()
            self.proc.wait()

    def _on_exit(self, code: int) -> None:
        reason = self.kill_reason
        self.kill_reason = None
        hit = self.io / "powercut.hit"
        if hit.exists():
            reason = "power_cut"
            self.last_cut = int(hit.read_text() or 0)
            hit.unlink()
        if reason is None:
            if code == EXIT_FLASH_ERROR:
                # Dead flash: the board stays off; the supervisor's job ends.
                self.state = "halted"
                self.error = self.device.get("error") or "flash error"
                self.proc = None
                self.running = False
                self._save_status()
                return
            reason = {
                EXIT_SOFT_RESET: "soft",
                EXIT_SOFT_RESET_RAW: "soft",
                EXIT_RESET: "soft",
            }.get(code, "crash")
            if code == EXIT_SOFT_RESET_RAW:
                self.next_mode = "raw_repl"
        if reason == "crash" and self._crash_loop():
            return
        if reason in ("watchdog", "power_cut", "power_on", "reset", "crash"):
            # Hard resets clear the watchdog; soft resets do not.
            self.wdt_ms = 0
        self.next_reason = reason
        self.proc = None
        self.state = "rebooting"
        self._save_status()
        time.sleep(RESTART_DELAY)
        self._spawn()

    def _line_in(self, data: bytes) -> None:
        # Bytes arriving on the board's UART line (harness injection).
        try:
            os.write(self.board_master, data)
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EIO):
                raise

    # -- control -----------------------------------------------------------------
    def _on_udp(self) -> None:
        data, _ = self.udp.recvfrom(16384)
        if data == b"feed":
            self.wdt_last = time.monotonic()
        elif data.startswith(b"wdt "):
            ms = int(data[4:])
            if self.wdt_ms == 0 or ms < self.wdt_ms:
                self.wdt_ms = ms
            self.wdt_last = time.monotonic()
        elif data.startswith(b"status "):
            try:
                self.device = json.loads(data[7:])
            except ValueError:
                return
            upd = self.device.get("update") if isinstance(self.device, dict) else None
            if upd and (not self.update_history or self.update_history[-1] != upd):
                self.update_history.append(upd)
                del self.update_history[:-100]
            self._save_status()
        elif data.startswith(b"stage "):
            self.stage = data[6:40].decode(errors="replace")
            self.inject.on_event(self.stage, time.monotonic())
        elif data.startswith(b"reset"):
            pass  # the VM exits with EXIT_RESET right after

    def _on_ctl(self) -> None:
        conn, _ = self.ctl.accept()
        conn.settimeout(5)
        with conn:
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = conn.recv(4096)
                if not chunk:
                    break
                buf += chunk
            try:
                req = json.loads(buf or b"{}")
                resp = self._handle(req)
            except (ValueError, KeyError, TypeError) as e:
                resp = {"ok": False, "error": f"bad request: {e}"}
            conn.sendall(json.dumps(resp).encode() + b"\n")

    def _handle(self, req: dict) -> dict:
        cmd = req.get("cmd")
        if cmd == "status":
            return {"ok": True, "status": self.status()}
        if cmd == "reset":
            if self.proc is None:
                self.state = "rebooting"
                self.next_reason = "reset"
                self._spawn()
            else:
                self._kill_vm("reset")
            return {"ok": True}
        if cmd == "power_cut":
            at = req.get("at_write")
            if at:
                write_text_atomic(self.io / "powercut.arm", str(int(at)))
                return {"ok": True, "armed": int(at)}
            self._kill_vm("power_cut")
            return {"ok": True}
        if cmd == "power_cycle":
            # Cold power-on (reason "power_on"), optionally with bytes put on
            # the UART line at times relative to the power-up / boot stages.
            try:
                n = self.inject.arm(req.get("inject") or [])
            except PlanError as e:
                return {"ok": False, "error": str(e)}
            if self.proc is None:
                self.next_reason = "power_on"
                self._spawn()
            else:
                self._kill_vm("power_on")
            return {"ok": True, "steps": n}
        if cmd == "stop":
            self.running = False
            return {"ok": True}
        return {"ok": False, "error": f"unknown command {cmd!r}"}

    def status(self) -> dict:
        return {
            "name": self.cfg["name"],
            "state": self.state,
            "error": self.error,
            "port": self.port,
            "uart_link": str(self.uart_link),
            "supervisor_pid": os.getpid(),
            "vm_pid": self.proc.pid if self.proc else None,
            "heap": self.cfg["heap"],
            "flash_size": self.cfg["flash_size"],
            "boots": self.boots,
            "last_reset_reason": getattr(self, "last_reason", None),
            "resets": self.resets,
            "watchdog_ms": self.wdt_ms,
            "stage": self.stage,
            "injected": self.inject.sent,
            "device": self.device,
            "update_history": self.update_history,
            "updated": time.time(),
        }

    def _save_status(self) -> None:
        write_json_atomic(self.dir / "status.json", self.status())

    # -- main loop -----------------------------------------------------------------
    def run(self) -> None:
        signal.signal(signal.SIGTERM, lambda *a: setattr(self, "running", False))
        (self.dir / "supervisor.pid").write_text(str(os.getpid()))
        self._spawn()
        try:
            while self.running:
                fds = [self.board_master, self.user_master, self.udp, self.ctl]
                r, _, _ = select.select(fds, [], [], self.inject.timeout(time.monotonic(), 0.05))
                due = self.inject.pop_due(time.monotonic())
                if due:
                    self._line_in(due)
                if self.board_master in r:
                    self._pump_bytes(self.board_master, self.user_master, log=True)
                if self.user_master in r:
                    self._pump_bytes(self.user_master, self.board_master, log=False)
                if self.udp in r:
                    self._on_udp()
                if self.ctl in r:
                    self._on_ctl()
                if self.proc is not None:
                    code = self.proc.poll()
                    if code is not None:
                        # Drain what the VM printed and reported last before rebooting
                        # (a halting VM's last status names the error it halts on).
                        self._pump_bytes(self.board_master, self.user_master, log=True)
                        while select.select([self.udp], [], [], 0)[0]:
                            self._on_udp()
                        self._on_exit(code)
                        continue
                if self.wdt_ms and self.proc is not None:
                    if (time.monotonic() - self.wdt_last) * 1000 > self.wdt_ms:
                        self._kill_vm("watchdog")
        finally:
            self._kill_vm("stop")
            if self.state != "halted":
                self.state = "stopped"
            self.device = {}
            self.proc = None
            self._save_status()
            for p in (self.ctl_path, self.dir / "supervisor.pid", self.uart_link):
                try:
                    p.unlink()
                except FileNotFoundError:
                    pass


def main() -> None:
    # Board files (status, console log, the VM's io/ files) are the owner's only.
    os.umask(0o077)
    Supervisor(Path(sys.argv[1]).resolve()).run()


if __name__ == "__main__":
    main()
