# The HAL of the STM32 board (board/hal.py contract) on the MicroPython stm32
# port: NUCLEO-F767ZI (STM32F767ZI, 2 MiB flash, 512 KiB RAM, Ethernet RMII to
# a LAN8742A PHY) plus a 16 MiB SPI NOR on SPI3 for the partitions.
#
#   flash       board/stm32/flash.py: pyb.Flash windows of the SPI NOR, littlefs2
#   watchdog    machine.WDT = the IWDG (32 kHz LSI; at most ~32 s; once started
#               nothing stops it; a system reset clears it)
#   reset       machine.reset() (NVIC system reset); reset cause from
#               machine.reset_cause() (RCC_CSR flags, read once at boot)
#   clock       the RTC (LSE on the Nucleo, kept on VBAT); set from NTP when
#               /state/board.json names a server (sync_clock)
#   identity    machine.unique_id(): the 96-bit UID at 0x1FF0F420
#   console     UART3 (PD8/PD9, the ST-LINK virtual COM port), 115200 8N1
#   fuses       board/stm32/otp.py: OTP block 0 lock word, OTP block 1 key
#   network     board/stm32/net.py: network.LAN (ETH MAC + LAN8742A)
#   sensors     board/stm32/sensors.py: vitals front-end on I2C1, pump
#               controller on USART6 (protocols written down there)
#   status      LEDs (LD1 green: running, LD3 red: halted) and one UART line
#               "[status] {...}" when the state changes
import json
import time

import machine
import pyb

from board.hal import Board
from board.stm32 import flash as stmflash
from board.stm32 import net
from board.stm32 import otp
from board.stm32 import sensors

WDT_MIN_MS = 100
WDT_MAX_MS = 32000  # IWDG: prescaler 256, reload 4095, 32 kHz LSI
STATUS_MAX = 8000
# time.time() counts from 2000-01-01 on ports built without
# MICROPY_EPOCH_IS_1970; the contract wants Unix seconds.
_EPOCH_OFFSET = 946684800 if time.gmtime(0)[0] == 2000 else 0
BOARD_CONFIG = "board.json"  # in the state partition: {"ip": [...], "ntp": "host"}

_REASONS = {
    machine.PWRON_RESET: "power_on",
    machine.HARD_RESET: "soft",  # NRST pin or machine.reset(): a requested reset
    machine.SOFT_RESET: "soft",
    machine.WDT_RESET: "watchdog",
    machine.DEEPSLEEP_RESET: "power_on",
}


class Stm32Board(Board):
    def __init__(self):
        # A power cut and a power-on look the same to the chip (POR/BOR flag):
        # both are "power_on" here; the sim's "power_cut" is the harness's
        # knowledge, not the board's.
        self._reason = _REASONS.get(machine.reset_cause(), "power_on")
        self._mounts = {}
        self._wdt = None
        self._status_state = None
        self.boot_notes = []
        self.lan = None
        self.vitals = sensors.VitalsFrontEnd()
        self.pump = sensors.PumpLink()

    # -- flash -------------------------------------------------------------
    def mount_flash(self):
        self._mounts = stmflash.mount_all()
        return self._mounts

    def mounts(self):
        return self._mounts

    def board_config(self):
        # Optional per-site settings the factory writes to the state partition.
        state = self._mounts.get("state")
        if not state:
            return {}
        try:
            with open(state + "/" + BOARD_CONFIG) as f:
                cfg = json.loads(f.read())
        except (OSError, ValueError):
            return {}
        return cfg if isinstance(cfg, dict) else {}

    # -- reset, watchdog ---------------------------------------------------
    def reset(self, reason="soft"):
        # Every reset is a full system reset: peripherals, lwIP and the heap
        # start clean, and the loader runs again.
        print("[ROM] reset:", reason)
        time.sleep_ms(20)  # let the UART drain the line
        machine.reset()

    def reset_reason(self):
        return self._reason

    def boot_mode(self):
        # The stm32 port itself skips the frozen main.py after a soft reset
        # from the raw REPL, so code that runs here always runs the app.
        return "normal"

    def watchdog_start(self, timeout_ms):
        if timeout_ms < WDT_MIN_MS:
            raise ValueError("watchdog timeout too short")
        if timeout_ms > WDT_MAX_MS:
            raise ValueError("watchdog timeout above the IWDG's %d ms" % WDT_MAX_MS)
        self._wdt = machine.WDT(timeout=timeout_ms)

    def watchdog_feed(self):
        if self._wdt is not None:
            self._wdt.feed()

    # -- clocks, identity, console ------------------------------------------
    def time(self):
        return time.time() + _EPOCH_OFFSET

    def ticks_ms(self):
        return time.ticks_ms()

    def sync_clock(self, host=None):
        # Set the RTC from NTP (micropython-lib ntptime, frozen in). Called by
        # the ROM before the egress guard is armed. Returns an error or None.
        host = host or self.board_config().get("ntp")
        if not host:
            return "no NTP server configured"
        try:
            import ntptime

            ntptime.host = host
            ntptime.settime()
        except (ImportError, OSError, OverflowError) as e:
            return "NTP: %s" % e
        return None

    def unique_id(self):
        import binascii

        return binascii.hexlify(machine.unique_id()).decode()

    def console(self):
        import sys

        return sys.stdin.buffer, sys.stdout.buffer

    # -- network -------------------------------------------------------------
    def network_up(self, timeout_ms=15000):
        # Ethernet up with DHCP (or the static address of board.json).
        self.lan = net.up(self.board_config().get("ip"), timeout_ms)
        return self.lan

    # -- fuses (OTP) ---------------------------------------------------------
    def lock_state(self):
        try:
            return otp.lock_state()
        except (OSError, ValueError):
            return otp.UNKNOWN

    def lock_console(self):
        otp.lock_console()

    def device_key(self):
        return otp.device_key()

    def rdp_level(self):
        return otp.rdp_level()

    def boot_stage(self, name):
        # The sim tells its supervisor; here the stage goes to the UART.
        print("[ROM] stage:", name)

    # -- sensors -------------------------------------------------------------
    def read_vitals(self):
        return self.vitals.read()

    def read_pump(self):
        return self.pump.read()

    # -- status ----------------------------------------------------------------
    def report_status(self, status):
        data = json.dumps(status)
        if len(data) > STATUS_MAX:
            raise ValueError("status too large")
        state = status.get("state")
        if state == "halted":
            pyb.LED(1).off()
            pyb.LED(3).on()
        else:
            pyb.LED(3).off()
            pyb.LED(1).on()
        if state != self._status_state:
            self._status_state = state
            print("[status]", data)
