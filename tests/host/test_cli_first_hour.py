"""First-hour CLI items (issue 14 item 4): `medsentry --version`, `pki list --json`."""
from __future__ import annotations

import importlib.metadata
import json

import pytest
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


def test_telemetry_stats_table_and_json(tmp_path):
    import sys
    import time
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from fleet_fixtures import Fleet

    f = Fleet(tmp_path)
    try:
        f.issue("pump-1", "pump-v2")
        t = time.time()
        f.vitals("pump-1", t)
        f.vitals("pump-1", t + 1)
        f.update("pump-1", t + 2, "1.0.0", step="up_to_date", version="1.0.0")
    finally:
        f.close()
    run = CliRunner()
    doc = json.loads(run.invoke(cli, ["--workdir", str(tmp_path), "telemetry", "stats", "--json"]).output)
    r = run.invoke(cli, ["--workdir", str(tmp_path), "telemetry", "stats"])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    head = lines[0].split()
    row = next(line.split() for line in lines[2:] if line.startswith("pump-1"))
    assert row[head.index("accepted")] == str(doc["pump-1"]["accepted"]) == "3"
    assert row[-3:-1] == ["up_to_date", "1.0.0"]
    assert any(line.startswith("(all)") for line in lines)


def test_a_command_outside_a_work_dir_says_so_and_how_to_point_at_one(tmp_path):
    missing = tmp_path / "nowhere"
    r = CliRunner().invoke(cli, ["--workdir", str(missing), "fleet", "status"])
    assert r.exit_code == 1 and "no fleet database" in r.output
    assert f"no work dir at {missing}" in r.output and "--workdir DIR or MEDSENTRY_WORKDIR" in r.output, r.output
    assert not missing.exists()  # asking created nothing
    missing.mkdir()  # a work dir that exists but lacks the database: no such hint
    r = CliRunner().invoke(cli, ["--workdir", str(missing), "fleet", "status"])
    assert r.exit_code == 1 and "no fleet database" in r.output and "no work dir" not in r.output


def test_collector_without_a_broker_says_connection_refused_at_once(tmp_path):
    import time

    from host_tools.broker.runner import free_port

    FleetPKI(tmp_path).init()
    port = free_port("127.0.0.1")  # nothing listens there
    t0 = time.monotonic()
    r = CliRunner().invoke(cli, ["--workdir", str(tmp_path), "collector", "--port", str(port), "--duration", "30"])
    assert r.exit_code == 1 and "connection refused" in r.output and "broker run" in r.output, r.output
    assert time.monotonic() - t0 < 5  # before: "timeout" after 10 s


@pytest.mark.parametrize("shard", ["2/2", "1", "a/2", "0/0", "-1/2"])
def test_collector_shard_out_of_range_is_a_usage_error_before_anything_opens(tmp_path, shard):
    FleetPKI(tmp_path).init()
    r = CliRunner().invoke(cli, ["--workdir", str(tmp_path), "collector", "--amqp", "127.0.0.1:1",
                                 "--shard", shard, "--duration", "1"])
    assert r.exit_code == 2 and "--shard" in r.output and "0 <= I < N" in r.output, r.output
    assert not (tmp_path / "fleet.db").exists()


def test_help_states_defaults_in_one_style():
    """Every option with a default shows it (click's show_default), and help text
    that describes a computed default says it the same way: "[default: ...]"."""
    import click

    found: list[str] = []

    def walk(cmd: click.Command, path: list[str]) -> None:
        if isinstance(cmd, click.Group):
            for n, c in cmd.commands.items():
                walk(c, [*path, n])
            return
        for p in cmd.params:
            if not isinstance(p, click.Option) or p.hidden:
                continue
            where = f"{' '.join(path)} {p.opts[0]}"
            has_default = not p.is_flag and not p.multiple and p.default is not None and not p.required
            if has_default and not p.show_default:
                found.append(f"{where}: default {p.default!r} not shown")
            if "default" in (p.help or "").lower() and "[default: " not in (p.help or ""):
                found.append(f"{where}: help says its default another way: {p.help!r}")

    walk(cli, [])
    assert not found, "\n".join(found)
