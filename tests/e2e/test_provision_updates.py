"""Issue 14 section 4: the two halves of the README connect.

A board provisioned exactly as the README shows (`repo serve` running in the work
dir, `device provision NAME --port P` with no update flags) takes its update URL
from the running `repo serve` and its TUF root from the repository, and installs a
published release. A board provisioned with no update server says so: its status
carries ``updates: off`` and a sealed update report ``step: off`` with the reason
(it stayed silent before: no check, no report).
"""
from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from host_tools.cli.main import cli
from host_tools.fleet import fleet_status
from host_tools.pki import FleetPKI
from host_tools.release.quickstart import ensure_models
from host_tools.release.served import record_path
from tests.e2e.broker_fixtures import running_fleet
from tests.e2e.sim_fixtures import sim_boards
from tests.e2e.test_update_attacks import confirmed
from tests.e2e.test_update_board import PASS, publish, steps

HEAP = "384k"  # README: boards that run telemetry and updates get --heap 384k
DEAD_BROKER = "1"  # no broker in these tests: the update path does not need one


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _repo_serve(work, tls):
    """`medsentry repo serve` of this work dir on a free port; yields the URL it
    recorded in release/serve.json; stopped with Ctrl-C (SIGINT) at the end."""
    srv = subprocess.Popen([sys.executable, "-m", "host_tools.cli.main", "--workdir", str(work), "repo", "serve",
                            "--port", str(_free_port()), *(["--tls"] if tls else [])],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while not record_path(work).exists():
            assert srv.poll() is None, srv.communicate()
            assert time.monotonic() < deadline, "repo serve wrote no release/serve.json"
            time.sleep(0.05)
        yield json.loads(record_path(work).read_text())["url"]
    finally:
        srv.send_signal(signal.SIGINT)
        srv.wait(10)


def _provision(work, name, port, *extra):
    res = CliRunner().invoke(cli, ["--workdir", str(work), "device", "provision", name, "--port", port,
                                   "--broker-port", DEAD_BROKER, *extra])
    assert res.exit_code == 0, res.output
    return res.output


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_board_provisioned_as_the_readme_shows_gets_updates(tmp_path, tls):
    work = tmp_path / "work"
    ensure_models(work, PASS, ("pump-v2",))
    publish({"work": work, "tmp": tmp_path / "trees"}, "pump-v2", "1.1.0", 2, {"agent/release.txt": b"1.1.0\n"})
    pki = FleetPKI(work)
    pki.init()
    pki.issue("pump-1", "pump-v2")
    with _repo_serve(work, tls) as url:
        with sim_boards(work) as boards:
            port = boards.start("pump-1", model="pump-v2", heap=HEAP)["port"]
            out = _provision(work, "pump-1", port)
            assert f"updates: on, {url}" in out and "1.root.json" in out, out
            assert url.startswith("https://" if tls else "http://")
            assert ("/state/tuf/server-ca.pem" in out) == tls, out  # the served certificate, for HTTPS
            st = boards.wait_for("pump-1", lambda s: bool({"installed", "error", "rejected"} & set(steps(s))),
                                 90, "the release installed")
            assert "installed" in steps(st), st["update_history"][-6:]
            st = boards.wait_for("pump-1", confirmed("1.1.0"), 90, "1.1.0 confirmed")
            assert st["device"]["updates"] == "on" and st["device"]["device_id"] == "pump-1"
    assert not record_path(work).exists()  # removed when repo serve stops


def test_board_without_an_update_server_says_updates_are_off(tmp_path):
    # the real broker and collector: the board's sealed "off" report reaches fleet status
    with running_fleet(tmp_path, devices=[("pump-1", "pump-v2")]) as fleet:
        col = fleet.collector()
        with sim_boards(fleet.workdir) as boards:
            port = boards.start("pump-1", model="pump-v2")["port"]
            res = CliRunner().invoke(cli, ["--workdir", str(fleet.workdir), "device", "provision", "pump-1",
                                           "--port", port, "--broker-port", str(fleet.broker.port)])
            assert res.exit_code == 0, res.output
            assert "updates: OFF (no update URL" in res.output, res.output
            # (a factory board reports "off" too: wait for the provisioned agent)
            st = boards.wait_for("pump-1", lambda s: (s.get("device") or {}).get("device_id") == "pump-1", 30,
                                 "the provisioned agent's status")
            assert st["device"]["updates"] == "off"
            assert st["device"]["update"]["step"] == "off", st["device"]["update"]
            assert "no update URL" in st["device"]["update"]["reason"]
            # a 256 KiB board runs no security monitor unless its config says so, and says why
            assert "KiB < 300 KiB" in st["device"]["security"]["off"], st["device"].get("security")
            assert col.wait_for(lambda s: s["accepted"] >= 2 and col.db.updates("pump-1"), 30), col.stats
        col.flush()
        d = {x["device_id"]: x for x in fleet_status(fleet.workdir)["devices"]}["pump-1"]
        assert d["updates"] == "off" and "no update URL" in d["updates_off_reason"], d


def test_bad_update_url_is_one_line_error_before_the_board_is_touched(tmp_path):
    work = tmp_path / "work"
    FleetPKI(work).init()
    res = CliRunner().invoke(cli, ["--workdir", str(work), "device", "provision", "pump-1", "--port",
                                   str(tmp_path / "no-such-port"), "--broker-port", DEAD_BROKER,
                                   "--update-url", "ftp://repo.example/"])
    assert res.exit_code == 1 and "is not an http(s)://HOST[:PORT][/PATH] URL" in res.output, res.output
    assert "Traceback" not in res.output and "no-such-port" not in res.output


def test_https_update_url_without_a_certificate_to_trust_is_off_on_host_and_board(tmp_path):
    """An HTTPS update URL and no certificate for it: the board (no CA store,
    server verification required) could never check; provisioning and the board
    both say updates are off and why, instead of a board that silently never updates."""
    work = tmp_path / "work"
    ensure_models(work, PASS, ("pump-v2",))
    FleetPKI(work).init()
    FleetPKI(work).issue("pump-1", "pump-v2")
    with sim_boards(work) as boards:
        port = boards.start("pump-1", model="pump-v2", heap=HEAP)["port"]
        out = _provision(work, "pump-1", port, "--update-url", f"https://127.0.0.1:{_free_port()}")
        assert "updates: OFF (" in out and "is HTTPS and no certificate to trust" in out, out
        st = boards.wait_for("pump-1", lambda s: (s.get("device") or {}).get("device_id") == "pump-1", 30,
                             "the provisioned agent's status")
        assert st["device"]["updates"] == "off"
        assert "HTTPS update URL and no server certificate" in st["device"]["update"]["reason"], st["device"]


def test_explicit_https_url_of_the_running_server_takes_its_certificate(tmp_path):
    """`--update-url` (or --from-network) naming the URL the running `repo serve
    --tls` serves: the board gets that server's certificate and installs."""
    work = tmp_path / "work"
    ensure_models(work, PASS, ("pump-v2",))
    publish({"work": work, "tmp": tmp_path / "trees"}, "pump-v2", "1.1.0", 2, {"agent/release.txt": b"1.1.0\n"})
    pki = FleetPKI(work)
    pki.init()
    pki.issue("pump-1", "pump-v2")
    with _repo_serve(work, True) as url:
        with sim_boards(work) as boards:
            port = boards.start("pump-1", model="pump-v2", heap=HEAP)["port"]
            out = _provision(work, "pump-1", port, "--update-url", url)
            assert f"updates: on, {url} (from --update-url, certificate of repo serve" in out, out
            st = boards.wait_for("pump-1", confirmed("1.1.0"), 120, "1.1.0 confirmed")
            assert st["device"]["updates"] == "on"
