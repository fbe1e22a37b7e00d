# The STM32 board's links to the medical function, behind read_vitals() and
# read_pump(). The security agent does not measure anything itself: on a real
# monitor or pump, a separate front-end / motor controller does, and this
# board reads it over a bus. The buses and protocols below are this port's
# choice, written down so a front-end can implement them; no such front-end
# is modelled in the Renode platform yet (renode/README.md).
#
# Vitals: I2C1 (PB8 SCL, PB9 SDA, 400 kHz), front-end at address 0x42,
#   register block at 0x00, 8 bytes, big-endian:
#     0 hr (bpm, u8)  1 spo2 (%, u8)  2-3 bp_sys (mmHg, u16)
#     4-5 bp_dia (mmHg, u16)  6-7 temp (centi-degC, u16)
#   A value of all ones is "not measured" and is left out of the record.
#   No answer (no device, bus error): an empty record, counted in `errors`;
#   the agent's self-test then reports implausible vitals - fail closed.
#
# Pump: USART6 (PG14 TX, PG9 RX), 115200 8N1. The board sends b"STATUS?\n";
#   the pump controller answers one JSON line within 50 ms:
#     {"state": "idle"|"infusing"|"alarm", "rate": mL/h, "vtbi": mL,
#      "infused": mL, "alarms": [codes]}
#   No answer or a malformed one: state "alarm" with alarm "PUMP_LINK" - an
#   unknown pump is never "idle", so the update gate never installs or
#   reboots on a guess (DESIGN: fail closed).
import json
import struct

import machine

VITALS_I2C = 1
VITALS_ADDR = 0x42
VITALS_REG = 0x00
VITALS_LEN = 8
VITALS_FREQ = 400000

PUMP_UART = 6
PUMP_BAUD = 115200
PUMP_TIMEOUT_MS = 50
PUMP_MAX_LINE = 512
PUMP_STATES = ("idle", "infusing", "alarm")


class VitalsFrontEnd:
    def __init__(self):
        self.i2c = machine.I2C(VITALS_I2C, freq=VITALS_FREQ)
        self.buf = bytearray(VITALS_LEN)
        self.errors = 0

    def read(self):
        try:
            self.i2c.readfrom_mem_into(VITALS_ADDR, VITALS_REG, self.buf)
        except OSError:
            self.errors += 1
            return {}
        hr, spo2, bp_sys, bp_dia, temp = struct.unpack(">BBHHH", self.buf)
        out = {}
        if hr != 0xFF:
            out["hr"] = hr
        if spo2 != 0xFF:
            out["spo2"] = spo2
        if bp_sys != 0xFFFF:
            out["bp_sys"] = bp_sys
        if bp_dia != 0xFFFF:
            out["bp_dia"] = bp_dia
        if temp != 0xFFFF:
            out["temp"] = temp / 100
        return out


def _link_alarm():
    return {"state": "alarm", "rate": 0.0, "vtbi": 0.0, "infused": 0.0, "alarms": ["PUMP_LINK"]}


class PumpLink:
    def __init__(self):
        self.uart = machine.UART(PUMP_UART, PUMP_BAUD, timeout=PUMP_TIMEOUT_MS)
        self.errors = 0

    def read(self):
        u = self.uart
        while u.any():  # drop anything stale
            u.read()
        u.write(b"STATUS?\n")
        line = u.readline()
        if not line or len(line) > PUMP_MAX_LINE or not line.endswith(b"\n"):
            self.errors += 1
            return _link_alarm()
        try:
            p = json.loads(line)
        except ValueError:
            self.errors += 1
            return _link_alarm()
        if not isinstance(p, dict) or p.get("state") not in PUMP_STATES:
            self.errors += 1
            return _link_alarm()
        alarms = p.get("alarms")
        return {
            "state": p["state"],
            "rate": float(p.get("rate", 0.0)),
            "vtbi": float(p.get("vtbi", 0.0)),
            "infused": float(p.get("infused", 0.0)),
            "alarms": [str(a) for a in alarms] if isinstance(alarms, list) else [],
        }
