# Synthetic patient and pump for the simulated board.
#
# Vitals are a smooth, plausible, deterministic function of time and the
# board's seed (an adult at rest). The pump follows a script the host writes
# into <io>/pump.json (see host_tools/sim/pump.py):
#   {"state": "idle"|"infusing", "rate": mL/h, "vtbi": mL,
#    "started": unix time, "alarms": ["OCCLUSION", ...]}
# The volume infused is integrated from rate and start time; an active alarm
# puts the pump in "alarm" state.
import json
import math

_PUMP_IDLE = {"state": "idle", "rate": 0.0, "vtbi": 0.0, "infused": 0.0, "alarms": []}


class Patient:
    def __init__(self, seed):
        # Seed moves baselines a little so boards differ.
        s = seed % 997
        self.hr0 = 68 + (s % 13)
        self.spo2_0 = 96.5 + (s % 3) * 0.5
        self.sys0 = 112 + (s % 17)
        self.dia0 = 72 + (s % 9)
        self.temp0 = 36.6 + (s % 5) * 0.1
        self.phase = (s % 360) * math.pi / 180

    def vitals(self, t):
        p = self.phase
        # Breathing-rate and slower autonomic oscillations.
        hr = self.hr0 + 3.0 * math.sin(t / 4.0 + p) + 1.5 * math.sin(t / 37.0 + 2 * p)
        spo2 = self.spo2_0 + 0.8 * math.sin(t / 23.0 + p)
        bp_sys = self.sys0 + 4.0 * math.sin(t / 31.0 + p)
        bp_dia = self.dia0 + 2.5 * math.sin(t / 29.0 + 3 * p)
        temp = self.temp0 + 0.15 * math.sin(t / 600.0 + p)
        return {
            "hr": int(round(hr)),
            "spo2": int(round(min(100.0, spo2))),
            "bp_sys": int(round(bp_sys)),
            "bp_dia": int(round(bp_dia)),
            "temp": round(temp, 2),
        }


class Pump:
    def __init__(self, script_path):
        self.path = script_path
        self._mtime = None
        self._script = None

    def _load(self):
        import os

        try:
            st = os.stat(self.path)
        except OSError:
            self._script = None
            self._mtime = None
            return
        mtime = (st[8], st[6])  # mtime, size
        if mtime == self._mtime and self._script is not None:
            return
        try:
            with open(self.path) as f:
                self._script = json.loads(f.read())
            self._mtime = mtime
        except (OSError, ValueError):
            # Half-written or bad script: keep the last good one.
            pass

    def read(self, now):
        self._load()
        sc = self._script
        if not sc:
            return dict(_PUMP_IDLE)
        rate = float(sc.get("rate", 0.0))
        vtbi = float(sc.get("vtbi", 0.0))
        alarms = list(sc.get("alarms", []))
        state = sc.get("state", "idle")
        infused = float(sc.get("infused", 0.0))
        if state == "infusing":
            elapsed = max(0.0, now - float(sc.get("started", now)))
            infused = min(vtbi, infused + rate * elapsed / 3600.0)
            if infused >= vtbi:
                state = "idle"
        if alarms:
            state = "alarm"
        return {"state": state, "rate": rate, "vtbi": vtbi, "infused": round(infused, 3), "alarms": alarms}
