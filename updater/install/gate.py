# The clinical gate: may the device install, activate or reboot now?
#
# Never while the pump is infusing or an alarm is active - an urgent security
# patch included. Outside those, routine patches wait for the maintenance
# window from configuration; urgent ones may skip the window.
#   window: None (any time) or (start_minute, end_minute) of the UTC day,
#   e.g. (120, 240) for 02:00-04:00; a window may wrap midnight (1380, 60).
import time

ALLOW = None


def parse_window(text):
    # "02:00-04:00" -> (120, 240); "" or None -> None. ValueError when bad.
    if not text:
        return None
    try:
        a, b = text.split("-")
        return (_minute(a), _minute(b))
    except ValueError:
        raise ValueError("maintenance window must look like 02:00-04:00, not %r" % text)


def _minute(hhmm):
    h, m = hhmm.strip().split(":")
    h, m = int(h), int(m)
    if not (0 <= h < 24 and 0 <= m < 60):
        raise ValueError("bad time %r" % hhmm)
    return h * 60 + m


def in_window(window, now):
    if window is None:
        return True
    t = time.gmtime(int(now))
    minute = t[3] * 60 + t[4]
    start, end = window
    if start == end:
        return True
    if start < end:
        return start <= minute < end
    return minute >= start or minute < end


def check(pump, now, window=None, urgent=False):
    # None when allowed, else the reason to defer (a short string).
    # Fails closed: a reading that is not a dict with a state is not "idle".
    if not isinstance(pump, dict) or not pump.get("state"):
        return "pump state unknown"
    state = pump["state"]
    if pump.get("alarms"):
        return "alarm active: %s" % ",".join(pump["alarms"])
    if state == "infusing":
        return "infusion in progress"
    if state != "idle":
        return "pump state %s" % state
    if not urgent and not in_window(window, now):
        return "outside the maintenance window"
    return ALLOW
