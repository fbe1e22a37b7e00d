# The installer: turns a TUF-verified package into a running patch through the
# inactive A/B slot, trial boot and confirmation (see installer.py).
