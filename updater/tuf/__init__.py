# TUF (The Update Framework, spec v1.0.x section 5) client for the device.
# errors: the two exception roots;
# metadata: the metadata model and its strict field checks; envelope + dsse: opening metadata files;
# signatures: threshold checks; hashes: length/hash checks; patterns:
# delegation path patterns; trusted_set: pure verification state; fetcher:
# HTTP(S) streaming (transport: socket/TLS differences); urls: URL parsing
# for the fetcher (patterns has the percent-encoding of names);
# updater: the orchestrator; client_main: the host-only
# command-line entry run on the VM (not shipped, see updater/manifest.py).

# Modules that may be dropped from sys.modules to give their code's heap
# back once a check is over (the next check imports them again); they go
# together (one module's isinstance checks refer to another's classes).
# updater.crypto (signature verifiers, SHA-512) is needed for metadata only.
# Never unloaded: `errors` (callers catch its classes: a re-import would make
# new classes their `except` clauses do not match, see
# tests/device/test_tuf_layout.py) and `fetcher`, `transport`, `urls` (the
# download of the chosen target keeps using them).
UNLOADABLE = (
    "updater.tuf.updater",
    "updater.tuf.trusted_set",
    "updater.tuf.envelope",
    "updater.tuf.dsse",
    "updater.tuf.signatures",
    "updater.tuf.metadata",
    "updater.tuf.patterns",
    "updater.tuf.hashes",
    "updater.crypto",
)
