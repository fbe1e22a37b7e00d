# Application entry point, started by the loader from the active slot.
# Runs the agent's main loop: watchdog, sensors, status.
import gc

from board.compat import sleep_ms, ticks_ms, ticks_diff

WATCHDOG_MS = 5000
STATUS_EVERY_MS = 1000


def status(board, slot, started, loops):
    gc.collect()
    return {
        "state": "running",
        "slot": slot,
        "reset_reason": board.reset_reason(),
        "uptime_s": ticks_diff(ticks_ms(), started) // 1000,
        "heap_free": gc.mem_free() if hasattr(gc, "mem_free") else None,
        "vitals": board.read_vitals(),
        "pump": board.read_pump(),
        "loops": loops,
    }


def run(board, slot, max_loops=0):
    board.watchdog_start(WATCHDOG_MS)
    started = ticks_ms()
    loops = 0
    print("medsentry agent: slot", slot, "reset", board.reset_reason())
    while True:
        board.watchdog_feed()
        board.report_status(status(board, slot, started, loops))
        loops += 1
        if max_loops and loops >= max_loops:
            return
        sleep_ms(STATUS_EVERY_MS)
