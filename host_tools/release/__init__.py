"""Manufacturer-side release tooling: keys, packages, and the TUF repository.

Built on python-tuf's Metadata API (and its ``tuf.repository`` abstraction) with
securesystemslib ``CryptoSigner`` keys. Modules by responsibility:

* :mod:`.keys` — encrypted key files, passphrase sources, signers
* :mod:`.initialize` — ``keys init``: keys + first repository version
* :mod:`.roles.repository` — verified load, staged signing, ordered commit
* :mod:`.journal` — intent journal: a killed change is finished by the next command
* :mod:`.recover` — ``repo recover``: finish, tidy, repair, verify
* :mod:`.roles.models` — per-device-model delegated roles
* :mod:`.package`, :mod:`.build`, :mod:`.sbom` — package format, mpy-cross build, CycloneDX SBOM
* :mod:`.publish`, :mod:`.recall`, :mod:`.rotate`, :mod:`.refresh` — repository operations
* :mod:`.serve` — static HTTP(S) server
* :mod:`.quickstart` — one call to set up a work dir and publish the device code (demos)

The library never imports click; every user-caused failure is a
:class:`.errors.ReleaseError` and leaves the repository unchanged.
"""
