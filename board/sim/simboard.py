# The HAL of the simulated board (see board/hal.py for the contract).
#
# "Hardware" lives in the host supervisor (host_tools/sim/supervisor.py):
# it holds the watchdog, the reset line and the power; the VM talks to it with
# UDP datagrams on loopback: "wdt <ms>", "feed", "status <json>".
# Everything the board is told at power-on comes in environment variables.
import os
import sys
import json
import time

from board.hal import Board, HALError
from board.sim import flash as simflash
from board.sim import fuses
from board.sim import sensors

# VM exit codes the supervisor understands.
EXIT_SOFT_RESET = 10  # soft reset: restart, run the application
EXIT_SOFT_RESET_RAW = 11  # soft reset from the raw REPL: restart into raw REPL
EXIT_RESET = 12  # machine reset requested by the application
EXIT_FLASH_ERROR = 3  # flash unusable: stay halted, never format


class SimBoard(Board):
    def __init__(self, env=None):
        g = env.get if env else os.getenv
        self.image_path = g("MEDSENTRY_IMAGE") or "flash.img"
        self.io_dir = g("MEDSENTRY_IO") or "io"
        self._reason = g("MEDSENTRY_RESET_REASON") or "power_on"
        self._mode = g("MEDSENTRY_BOOT_MODE") or "normal"
        self._uid = g("MEDSENTRY_UID") or "00000000"
        # The OTP area lives outside the flash image (board/sim/fuses.py);
        # without one the lock state is unknown, i.e. locked.
        self.fuse_dir = g("MEDSENTRY_FUSES") or ""
        # What the ROM did at this boot that the factory tool should hear
        # about (e.g. an uncommitted provisioning rolled back).
        self.boot_notes = []
        port = g("MEDSENTRY_CTL_PORT")
        self._ctl_addr = None
        self._sock = None
        if port:
            import socket

            self._ctl_addr = socket.getaddrinfo("127.0.0.1", int(port))[0][-1]
            self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        cut = int(g("MEDSENTRY_POWERCUT_AT") or "0")
        self.counter = simflash.WriteCounter(
            cut_at=cut,
            arm_path=self.io_dir + "/powercut.arm",
            hit_path=self.io_dir + "/powercut.hit",
        )
        self.image = None
        self._mounts = {}
        self.patient = sensors.Patient(int(self._uid[-6:], 16) if self._uid else 0)
        self.pump = sensors.Pump(self.io_dir + "/pump.json")

    # -- flash -------------------------------------------------------------
    def mount_flash(self):
        self.image = simflash.ImageFile(self.image_path, self.counter)
        self._mounts = simflash.mount_all(self.image)
        return self._mounts

    def mounts(self):
        return self._mounts

    # -- reset, watchdog ---------------------------------------------------
    def _send(self, msg):
        if self._sock is None:
            return
        try:
            self._sock.sendto(msg, self._ctl_addr)
        except OSError as e:
            raise HALError("supervisor unreachable: %s" % e)

    def reset(self, reason="soft"):
        self._send(b"reset " + reason.encode())
        sys.exit(EXIT_RESET)

    def reset_reason(self):
        return self._reason

    def boot_mode(self):
        return self._mode

    def watchdog_start(self, timeout_ms):
        if timeout_ms < 100:
            raise ValueError("watchdog timeout too short")
        self._send(("wdt %d" % timeout_ms).encode())

    def watchdog_feed(self):
        self._send(b"feed")

    # -- clocks, identity, console ------------------------------------------
    def time(self):
        return time.time()

    def ticks_ms(self):
        if hasattr(time, "ticks_ms"):
            return time.ticks_ms()
        return int(time.time() * 1000)

    def unique_id(self):
        return self._uid

    def console(self):
        return sys.stdin.buffer, sys.stdout.buffer

    # -- fuses (OTP area outside the flash image) ----------------------------
    def lock_state(self):
        return fuses.lock_state(self.fuse_dir)

    def lock_console(self):
        fuses.blow_lock(self.fuse_dir)

    def device_key(self):
        return fuses.device_key(self.fuse_dir)

    def boot_stage(self, name):
        # Tell the supervisor which boot stage starts (ROM, mount, loader):
        # the harness times UART attacks against it.
        try:
            self._send(b"stage " + name.encode())
        except HALError:
            pass

    # -- sensors -------------------------------------------------------------
    def read_vitals(self):
        return self.patient.vitals(self.time())

    def read_pump(self):
        return self.pump.read(self.time())

    # -- status ----------------------------------------------------------------
    def report_status(self, status):
        data = json.dumps(status)
        if len(data) > 8000:
            raise ValueError("status too large")
        self._send(b"status " + data.encode())
