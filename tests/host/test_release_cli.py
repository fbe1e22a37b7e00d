"""The `medsentry keys|package|release|repo|timestamp` commands as a newcomer
runs them (passphrases from MEDSENTRY_KEY_PASSPHRASE_* or typed at the prompt)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
from test_release_support import NgClient, write_sources  # noqa: E402

from host_tools.cli.main import cli  # noqa: E402
from host_tools.release.serve import RepositoryServer  # noqa: E402

NAMES = ["ROOT_1", "ROOT_2", "ROOT_3", "TARGETS", "SNAPSHOT", "TIMESTAMP", "MODEL_PUMP_V2"]


def test_full_cli_workflow(tmp_path):
    wd = tmp_path / "wd"
    env = {f"MEDSENTRY_KEY_PASSPHRASE_{n}": f"secret-for-{n.lower()}" for n in NAMES}
    runner = CliRunner()

    def run(*args, input=None, extra=None, code=0):
        r = runner.invoke(cli, ["--workdir", str(wd), *args], env={**env, **(extra or {})}, input=input)
        assert r.exit_code == code, r.output + repr(r.exception)
        return r.output

    out = run("keys", "init", "--no-prompt", "--expiry", "timestamp=12h")
    assert "1.root.json" in out
    assert json.loads((wd / "release-config.json").read_text())["expiry"]["timestamp"] == "12h"
    run("keys", "add-model", "pump-v2", "--no-prompt")
    keys = json.loads(run("keys", "list", "--json"))
    assert {k["role"] for k in keys} == {"root", "targets", "snapshot", "timestamp", "pump-v2"}

    src = write_sources(tmp_path / "src")
    out = run("package", "build", "--model", "pump-v2", "--version", "1.0.0", "--base-dir", str(src), str(src))
    assert "security counter: 1" in out and "full package pump-v2 1.0.0" in out
    pkg = wd / "packages" / "pump-v2-1.0.0.mspk"
    assert "verified" in run("package", "inspect", str(pkg))
    assert json.loads(run("package", "sbom", str(pkg)))["bomFormat"] == "CycloneDX"
    run("release", "publish", str(pkg), "--no-prompt")

    write_sources(src, variant="b")
    out = run("package", "build", "--model", "pump-v2", "--version", "1.1.0", "--base", "1.0.0",
              "--base-dir", str(src), str(src))
    assert "security counter: 2" in out and "patch package" in out and "(1 carried)" in out
    patch = wd / "packages" / "pump-v2-1.1.0-patch.mspk"
    # the model key's passphrase typed at the prompt instead of the environment
    no_model_env = {k: v for k, v in env.items() if "MODEL" not in k}
    r = runner.invoke(cli, ["--workdir", str(wd), "release", "publish", str(patch), "--channel", "canary"],
                      env=no_model_env, input="secret-for-model_pump_v2\n")
    assert r.exit_code == 0, r.output
    assert "Passphrase for key model-pump-v2" in r.output
    # A mistyped passphrase is asked for again (before: the command failed at the first typo),
    # three tries in all.
    no_ts_env = {k: v for k, v in env.items() if "TIMESTAMP" not in k}
    r = runner.invoke(cli, ["--workdir", str(wd), "timestamp", "refresh"], env=no_ts_env,
                      input="typo-1\nsecret-for-timestamp\n")
    assert r.exit_code == 0 and "wrong passphrase for key timestamp (try 2 of 3)" in r.output, r.output
    r = runner.invoke(cli, ["--workdir", str(wd), "timestamp", "refresh"], env=no_ts_env,
                      input="typo-1\ntypo-2\ntypo-3\nsecret-for-timestamp\n")
    assert r.exit_code == 1 and "try 3 of 3" in r.output and "wrong passphrase for key 'timestamp'" in r.output

    rels = json.loads(run("release", "list", "--json"))
    assert [(r["version"], r["channel"], r["package_kind"]) for r in rels] == [
        ("1.0.0", "stable", "full"), ("1.1.0", "canary", "patch")]
    assert "1.1.0" in run("release", "list")
    run("release", "recall", "1.1.0", "--reason", "alarm regression", "--no-prompt")
    rels = json.loads(run("release", "list", "--json"))
    assert rels[1]["status"] == "recalled" and rels[1]["reason"] == "alarm regression"

    out = run("timestamp", "refresh", "--no-prompt", extra={})
    assert "timestamp v" in out
    status = run("repo", "status")
    assert "timestamp" in status and "EXPIRED" not in status
    roles = {r["role"]: r for r in json.loads(run("repo", "status", "--json"))}
    assert set(roles) == {"root", "timestamp", "snapshot", "targets", "pump-v2"}
    assert not roles["timestamp"]["expired"] and roles["root"]["version"] >= 1
    run("repo", "expiry", "snapshot", "3d")
    run("repo", "expiry", "snapshot", "three days", code=1)

    # rotate the timestamp key: new passphrase from MEDSENTRY_NEW_KEY_PASSPHRASE_TIMESTAMP
    out = run("keys", "rotate", "timestamp", "--no-prompt",
              extra={"MEDSENTRY_NEW_KEY_PASSPHRASE_TIMESTAMP": "brand-new-ts-pass"})
    assert "root is now version 2" in out
    env["MEDSENTRY_KEY_PASSPHRASE_TIMESTAMP"] = "brand-new-ts-pass"
    run("timestamp", "refresh", "--no-prompt")
    run("keys", "rotate", "timestamp", "--no-prompt", code=1)  # no new passphrase given

    with RepositoryServer(wd / "repository") as srv:
        client = NgClient(tmp_path / "client", wd / "repository" / "metadata" / "1.root.json")
        assert client.fetch(srv.url, "pump-v2/pump-v2-1.0.0.mspk") == pkg.read_bytes()
        assert client.fetch(srv.url, "pump-v2/pump-v2-1.1.0-patch.mspk") is None
        assert client.fetch(srv.url, "pump-v2/pump-v2-1.1.0.mspk") is None
        assert json.loads(client.fetch(srv.url, "pump-v2/recalls.json"))["recalled"][0]["version"] == "1.1.0"


def test_init_prompts_for_each_root_passphrase(tmp_path):
    runner = CliRunner()
    answers = "".join(f"pass-for-key-{n}\npass-for-key-{n}\n" for n in ["r1", "r2", "r3", "t", "s", "ts"])
    r = runner.invoke(cli, ["--workdir", str(tmp_path / "wd"), "keys", "init"], input=answers, env={})
    assert r.exit_code == 0, r.output
    assert r.output.count("Repeat for confirmation") == 6
    assert "Passphrase for the key root-3" in r.output


def test_quickstart_publishes_the_real_device_code(tmp_path):
    """The one-call helper for `make demo`: real build of agent/ updater/ board/,
    real signatures; a second call publishes the next version."""
    from host_tools.release.quickstart import DemoPassphrases, publish_demo_release

    pw = DemoPassphrases("test-secret")
    first = publish_demo_release(tmp_path / "wd", pw, models=("pump-v2",))
    second = publish_demo_release(tmp_path / "wd", pw, models=("pump-v2",))
    assert [r.version for r in first.releases + second.releases] == ["1.0.0", "1.0.1"]
    with RepositoryServer(first.repository) as srv:
        client = NgClient(tmp_path / "client", first.root_path)
        data = client.fetch(srv.url, "pump-v2/pump-v2-1.0.1.mspk")
    from host_tools.release.package import verify_package_bytes

    files = [f["path"] for f in verify_package_bytes(data).manifest["files"]]
    assert any(p.startswith("agent/") for p in files) and any(p.startswith("updater/") for p in files)
