"""Checks for the Debian programs the host tools need, with a clear error."""
from __future__ import annotations

import shutil

# program -> Debian package that provides it
PROGRAMS = {
    "mosquitto": "mosquitto",
    "mosquitto_sub": "mosquitto-clients",
    "mosquitto_pub": "mosquitto-clients",
    "faketime": "faketime",
    "freeradius": "freeradius",
    "eapol_test": "eapoltest",
    "nft": "nftables",
    "ip": "iproute2",
    "openssl": "openssl",
}
SEARCH_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class MissingDependency(RuntimeError):
    """A program from a Debian package is not installed."""


def require_program(name: str, package: str | None = None) -> str:
    """Full path of `name`, or MissingDependency naming the package to install."""
    found = shutil.which(name) or shutil.which(name, path=SEARCH_PATH)
    if found:
        return found
    pkg = package or PROGRAMS.get(name, name)
    raise MissingDependency(
        f"`{name}` is not installed: install the Debian package `{pkg}` "
        f"(run `make setup` as root, or `apt-get install {pkg}`)"
    )
