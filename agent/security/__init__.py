# The device's security agent: events (events.py), persistent security flags
# (flags.py), signed commands (commands.py: verification; commands_run.py:
# execution). The egress guard lives in the board HAL (board/netguard.py).
