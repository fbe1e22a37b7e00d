# TUF (The Update Framework, spec v1.0.x section 5) client for the device.
# errors: the two exception roots; metadata: strict parsing; trusted_set: pure
# verification state; fetcher: HTTP(S) streaming; updater: the orchestrator;
# client_main: the command-line entry run on the VM.
