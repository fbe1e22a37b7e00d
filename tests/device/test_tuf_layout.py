# The TUF package's declared unloadable modules (issue 9 item 2) and the
# transport's CA file reading (PEM through updater.crypto.der).
import binascii
import sys

import agent
import devtest
from updater import tuf


def _snapshot():
    # Every updater.* module and where its parent package refers to it.
    return dict((k, v) for k, v in sys.modules.items() if k == "updater" or k.startswith("updater."))


def _restore(saved):
    # Put the process back as it was (CPython runs every device test in
    # one process: later tests hold the original classes).
    for k in list(sys.modules):
        if (k == "updater" or k.startswith("updater.")) and k not in saved:
            del sys.modules[k]
    for k, v in saved.items():
        sys.modules[k] = v
        parent, _, child = k.rpartition(".")
        if parent in saved:
            setattr(saved[parent], child, v)


def _bad_metadata_error_class():
    # The class of the error a freshly imported TUF client raises on bad data.
    from updater.tuf import envelope, errors

    try:
        envelope.load(b'{"signed": 1, "signatures": []}', "root")
    except errors.RepositoryError as e:  # the root class as loaded now
        return type(e)
    raise AssertionError("bad metadata was accepted")


def test_errors_and_fetcher_are_not_unloadable():
    for name in tuf.UNLOADABLE:
        assert name.startswith("updater.")
        for kept in ("updater.tuf.errors", "updater.tuf.fetcher", "updater.tuf.transport", "updater.tuf.urls", "updater.tuf"):
            assert not (kept == name or kept.startswith(name + "."))


def test_errors_the_agent_catches_survive_an_unload():
    from agent import updates
    from updater.tuf import updater as _client  # a check loads the whole client  # noqa: F401

    saved = _snapshot()
    try:
        catches = (updates.DownloadError, updates.RepositoryError)
        agent.release_modules(tuf.UNLOADABLE)
        for name in tuf.UNLOADABLE:
            assert name not in sys.modules
        assert "updater.tuf.errors" in sys.modules
        # The next check imports the client again; what it raises is still
        # caught by the agent's except clauses.
        cls = _bad_metadata_error_class()
        assert issubclass(cls, updates.RepositoryError)
        from updater.tuf import errors, fetcher

        assert (errors.DownloadError, errors.RepositoryError) == catches
        assert fetcher.DownloadError is updates.DownloadError
    finally:
        _restore(saved)


def test_unloading_errors_would_break_the_agents_except_clauses():
    # Why `errors` is not declared unloadable: the hazard, repeated.
    from agent import updates

    saved = _snapshot()
    try:
        agent.release_modules(tuf.UNLOADABLE + ("updater.tuf.errors",))
        cls = _bad_metadata_error_class()
        assert not issubclass(cls, updates.RepositoryError)
    finally:
        _restore(saved)


def _write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def test_ca_file_pem_or_der():
    from updater.crypto.der import DERError
    from updater.tuf import transport

    d = devtest.tmpdir()
    der = bytes(range(256)) * 3
    b64 = binascii.b2a_base64(der).replace(b"\n", b"")
    lines = b"\n".join(b64[i:i + 64] for i in range(0, len(b64), 64))
    _write(d + "/ca.pem", b"-----BEGIN CERTIFICATE-----\n" + lines + b"\n-----END CERTIFICATE-----\n")
    assert transport.ca_der(d + "/ca.pem") == der
    _write(d + "/ca.der", der)
    assert transport.ca_der(d + "/ca.der") == der
    # Not a certificate, or junk in the base64: refused, not half-read.
    _write(d + "/key.pem", b"-----BEGIN PUBLIC KEY-----\n" + lines + b"\n-----END PUBLIC KEY-----\n")
    devtest.raises(DERError, transport.ca_der, d + "/key.pem")
    _write(d + "/bad.pem", b"-----BEGIN CERTIFICATE-----\n" + lines[:40] + b"!" + lines[40:]
           + b"\n-----END CERTIFICATE-----\n")
    devtest.raises(DERError, transport.ca_der, d + "/bad.pem")
