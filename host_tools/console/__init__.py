"""Host side of the maintenance console: accounts (store.py) and sessions over
the UART (session.py)."""
