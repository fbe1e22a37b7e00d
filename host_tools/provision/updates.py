"""Which update server and TUF root a board is provisioned with.

The update URL comes from ``--update-url`` or the running ``medsentry repo serve`` of
the same work dir (``release/serve.json``); the trusted root from ``--tuf-root`` or
the work dir's repository (its newest ``N.root.json``). An HTTPS server's
certificate comes from ``--update-ca`` or from the running ``repo serve --tls`` that
serves that URL (the board requires a verified server: with no certificate to trust
it could never connect). A board gets updates only with all it needs; without one
provisioning says so, and the board reports ``updates: off`` with the reason.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from host_tools.release.inputs import InputError, read_regular
from host_tools.release.served import newest_root, served

from .bundle import check_tuf_root, merge_config
from .errors import ProvisionError

SMALL_FILE = 1024 * 1024


@dataclass
class UpdateSettings:
    config: dict  # merged into the board's config.json ({} when off)
    tuf_root: bytes | None
    ca: bytes | None  # HTTPS: the server certificate's CA, written to /state/tuf/server-ca.pem
    url: str | None
    url_from: str  # "--update-url", "repo serve (pid N)", "--config" or ""
    root_from: str  # path of the root file, or ""
    off: str | None  # why updates are off on this board; None: on


def _read(path: Path, what: str) -> bytes:
    try:
        return read_regular(path, SMALL_FILE, what)
    except InputError as exc:
        raise ProvisionError(str(exc)) from None


def update_settings(workdir: str | Path, update_url: str | None, tuf_root: str | None,
                    config: dict | None = None, update_ca: str | None = None) -> UpdateSettings:
    """Resolve flags, ``repo serve`` and the repository into what is written."""
    cfg_update = (config or {}).get("update") if isinstance((config or {}).get("update"), dict) else {}
    url_from, ca = "", None
    url = None
    if update_url is not None:
        parts = urlsplit(update_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ProvisionError(f"--update-url {update_url!r} is not an http(s)://HOST[:PORT][/PATH] URL")
        url, url_from = update_url.rstrip("/"), "--update-url"
        srv = served(workdir)
        if update_ca is None and srv is not None and srv.ca is not None and srv.url.rstrip("/") == url:
            ca = _read(srv.ca, "the update server's certificate")
            url_from += f", certificate of repo serve (pid {srv.pid})"
    elif cfg_update.get("metadata_url"):
        url_from = "--config"
    else:
        srv = served(workdir)
        if srv is not None:
            url, url_from = srv.url, f"repo serve (pid {srv.pid})"
            if srv.ca is not None:
                ca = _read(srv.ca, "the update server's certificate")
    if update_ca is not None:
        ca = _read(Path(update_ca), "--update-ca")
        if b"-----BEGIN CERTIFICATE-----" not in ca:
            raise ProvisionError(f"--update-ca {update_ca}: not a PEM certificate")
    root_path = Path(tuf_root) if tuf_root else newest_root(workdir)
    root = check_tuf_root(_read(root_path, "TUF root"), str(root_path)) if root_path else None
    over: dict = {}
    if url is not None:
        over = {"update": {"metadata_url": url + "/metadata", "targets_url": url + "/targets"}}
    if ca is not None:
        over.setdefault("update", {})["ca"] = "tuf/server-ca.pem"
    merged = merge_config(config or {}, over)  # an explicit or served URL wins over --config
    off = None
    if not (merged.get("update") or {}).get("metadata_url"):
        off = ("no update URL: start `medsentry repo serve` in this work dir, or pass --update-url")
    elif (urlsplit(str(merged["update"]["metadata_url"])).scheme == "https" and ca is None
          and not (merged.get("update") or {}).get("ca")):
        off = (f"{merged['update']['metadata_url']} is HTTPS and no certificate to trust was given: pass "
               "--update-ca FILE (the server's certificate or its CA), or run `repo serve --tls` for that URL "
               "in this work dir")
    elif root is None:
        off = ("no TUF root: pass --tuf-root, or run this in the work dir of the repository "
               "(`medsentry keys init`)")
    return UpdateSettings(config=merged, tuf_root=root, ca=ca, url=url or cfg_update.get("metadata_url"),
                          url_from=url_from, root_from=str(root_path) if root_path else "", off=off)
