# The device's security agent: events (events.py) and their tamper-evident log
# (eventlog.py, logread.py), posture reports and the integrity scan
# (monitor.py, posture.py), persistent security flags (flags.py), signed
# commands (commands.py: verification; commands_run.py: execution). The
# egress guard lives in the board HAL (board/netguard.py).
