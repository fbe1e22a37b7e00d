"""First-hour CLI items (issue 14 item 4): `medsentry --version`, `pki list --json`."""
from __future__ import annotations

import importlib.metadata
import json

from click.testing import CliRunner

from host_tools.cli.main import cli
from host_tools.pki import FleetPKI


def test_version():
    r = CliRunner().invoke(cli, ["--version"])
    assert r.exit_code == 0
    assert r.output == f"medsentry {importlib.metadata.version('medsentry')}\n"


def test_pki_list_json_has_no_key_material(tmp_path):
    pki = FleetPKI(tmp_path)
    pki.init()
    pki.issue("pump-1", "pump-v2")
    rec = pki.device("pump-1")
    r = CliRunner().invoke(cli, ["--workdir", str(tmp_path), "pki", "list", "--json"])
    assert r.exit_code == 0, r.output
    (dev,) = json.loads(r.output)
    assert (dev["device_id"], dev["model"], dev["revoked"]) == ("pump-1", "pump-v2", None)
    assert dev["not_after"] == rec.not_after
    assert [k["kid"] for k in dev["telemetry_keys"]] == [rec.active_key().kid.hex()]
    assert dev["telemetry_keys"][0]["active"] is True
    tk = rec.active_key()
    for secret in (tk.key.hex(), tk.base_iv.hex(), "PRIVATE KEY"):
        assert secret not in r.output
