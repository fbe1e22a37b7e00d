# The board HAL contract: everything device code may ask of the hardware.
#
# agent/ and updater/ talk to the board only through an object with these
# methods. board/sim/simboard.py implements it on the simulated board (a
# MicroPython VM with a littlefs flash image, a pty UART and a supervisor that
# plays power, reset and watchdog). A port to a real MCU implements the same
# methods over machine.WDT, machine.reset, esp32/stm flash partitions, etc.


class HALError(OSError):
    # The hardware refused or failed an operation (not a data problem).
    pass


class Board:
    # Names of the flash areas and where they are mounted.
    AREAS = ("loader", "slot_a", "slot_b", "state", "data")

    def mounts(self):
        # {"loader": "/loader", "slot_a": "/slot_a", ...}: mounted littlefs volumes.
        raise NotImplementedError

    def reset(self, reason="soft"):
        # Reboot the board; never returns.
        raise NotImplementedError

    def reset_reason(self):
        # Why this boot happened: "power_on", "soft", "watchdog", "power_cut".
        raise NotImplementedError

    def boot_mode(self):
        # "normal" (run the application) or "raw_repl" (after a soft reset
        # requested from the raw REPL: stay in the REPL, do not run the app).
        return "normal"

    def watchdog_start(self, timeout_ms):
        # Arm the hardware watchdog. Once armed it cannot be disarmed, and it
        # stays armed across soft resets; only a hard reset clears it.
        raise NotImplementedError

    def watchdog_feed(self):
        raise NotImplementedError

    def time(self):
        # Wall-clock seconds since the Unix epoch (RTC).
        raise NotImplementedError

    def ticks_ms(self):
        # Monotonic milliseconds (wraps on MicroPython; use ticks_diff).
        raise NotImplementedError

    def unique_id(self):
        # The chip's unique id as a hex string.
        raise NotImplementedError

    def console(self):
        # (input_stream, output_stream) of the UART console (binary).
        raise NotImplementedError

    # -- one-time-programmable area: console lock, device-unique key ---------
    # Real boards: eFuses / OTP words (ESP32 eFuse BLOCK_KEYx + JTAG/UART
    # download disable, STM32 OTP + RDP level 2, nRF52/53 UICR APPROTECT +
    # KMU); the sim board: board/sim/fuses.py, a file outside the flash image.

    def lock_state(self):
        # "locked", "open" (factory board, console usable) or "unknown".
        # Callers treat anything but "open" as locked (fail closed).
        raise NotImplementedError

    def lock_console(self):
        # Program the console lock fuse: irreversible, survives any reflash.
        # It is the commit point of factory provisioning.
        raise NotImplementedError

    def device_key(self):
        # The 16-byte device-unique key that seals secrets on flash
        # (agent/keystore.py). Only code the board runs gets it: on a locked
        # board that is the ROM, the loader and the agent - no console runs
        # code. Hardware: a key the chip never lets software read (ESP32
        # HMAC/eFuse key block, STM32 SAES with DHUK, nRF KMU, an ATECC608
        # secure element) - the port then seals through the peripheral
        # instead of returning bytes. HALError when it is not programmed.
        raise NotImplementedError

    def read_vitals(self):
        # {"hr": bpm, "spo2": %, "bp_sys": mmHg, "bp_dia": mmHg, "temp": degC}
        raise NotImplementedError

    def read_pump(self):
        # {"state": "idle"|"infusing"|"alarm", "rate": mL/h, "vtbi": mL,
        #  "infused": mL, "alarms": [codes]}
        raise NotImplementedError

    def report_status(self, status):
        # Publish a status dict to whatever shows board status locally
        # (the sim supervisor; an LED or display on real hardware).
        raise NotImplementedError
