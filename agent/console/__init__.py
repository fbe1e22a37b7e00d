# Maintenance console of a provisioned board: password + TOTP login, roles,
# lockout kept on flash (see shell.py for the session, accounts.py for the
# account store, lockout.py for the counters).
