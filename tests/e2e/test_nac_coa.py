"""Change of authorisation (RFC 5176): when a decision changes, `nac run --coa` tells
the switch at once with a Disconnect-Request. A second FreeRADIUS with a CoA
listener stands in for the switch (it ACKs known sessions, NAKs others, and drops
a request with the wrong shared secret)."""
from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from host_tools.broker.runner import free_udp_port
from host_tools.cli.main import cli
from host_tools.nac.coa import CoaError, disconnect
from host_tools.nac.radius_config import RadiusSettings, write_config
from host_tools.pki import FleetPKI
from host_tools.procutil import read_log, stop_process

pytestmark = pytest.mark.skipif(not shutil.which("freeradius"), reason="freeradius not installed")

SECRET = "nas-shared-secret-0123456789"

NAS_SITE = """server nas {
listen {
\ttype = coa
\tipaddr = 127.0.0.1
\tport = %d
}
recv-coa {
\tif (&User-Name =~ /^pump-/) {
\t\tok
\t}
\telse {
\t\treject
\t}
}
send-coa {
\tok
}
}
"""


@pytest.fixture
def nas(tmp_path):
    """A CoA listener (the switch's side), from the same FreeRADIUS package."""
    pki = FleetPKI(tmp_path / "w")
    pki.init()
    port = free_udp_port()
    d = write_config(pki, [], RadiusSettings(port=free_udp_port(), secret=SECRET, run_as_root=True),
                     tmp_path / "nas")
    for f in (d / "sites-enabled").iterdir():
        f.unlink()
    (d / "mods-enabled" / "eap").unlink()
    (d / "sites-enabled" / "nas").write_text(NAS_SITE % port)
    log = tmp_path / "nas.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(["freeradius", "-X", "-d", str(d)], stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 15
        while "Ready to process" not in read_log(log):
            assert proc.poll() is None and time.monotonic() < deadline, read_log(log)[-2000:]
            time.sleep(0.05)
        yield pki, port, log
    finally:
        stop_process(proc)


def test_disconnect_ack_nak_and_wrong_secret(nas, tmp_path):
    _pki, port, log = nas
    (tmp_path / "secret").write_text(SECRET + "\n")
    r = CliRunner().invoke(cli, ["nac", "coa", "pump-7", "--nas", f"127.0.0.1:{port}",
                                 "--secret-file", str(tmp_path / "secret")])
    assert r.exit_code == 0 and "Disconnect-ACK" in r.output, r.output
    assert disconnect("127.0.0.1", port, SECRET, "pump-1") is True
    assert disconnect("127.0.0.1", port, SECRET, "mon-9") is False
    with pytest.raises(CoaError, match="no answer"):
        disconnect("127.0.0.1", port, "not-the-secret-0123456789", "pump-1", timeout=0.5)
    text = read_log(log)
    assert 'User-Name = "pump-1"' in text and "invalid Message-Authenticator" in text


def test_nac_run_sends_disconnect_when_a_decision_changes(nas, tmp_path):
    pki, port, log = nas
    pki.issue("pump-1", "pump-v2")
    secret = tmp_path / "secret"
    secret.write_text(SECRET + "\n")
    work = str(pki.workdir)
    proc = subprocess.Popen([sys.executable, "-m", "host_tools.cli.main", "--workdir", work, "nac", "run",
                             "--refresh", "0.3", "--duration", "60", "--secret-file", str(secret),
                             "--coa", f"127.0.0.1:{port}"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        addr = Path(work) / "nac" / "address.json"
        deadline = time.monotonic() + 20
        while not addr.exists():
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        assert json.loads(addr.read_text())["host"] == "127.0.0.1"
        r = CliRunner().invoke(cli, ["--workdir", work, "nac", "quarantine", "pump-1", "--reason", "alert"])
        assert r.exit_code == 0, r.output
        deadline = time.monotonic() + 20
        while 'User-Name = "pump-1"' not in read_log(log):
            assert time.monotonic() < deadline, "no Disconnect-Request reached the switch"
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=20)[0].decode()
    assert "pump-1: Disconnect-ACK" in out, out
