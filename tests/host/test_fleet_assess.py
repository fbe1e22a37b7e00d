"""Issue 14 item 2: `medsentry assess` — OSV advisories, findings, risk, HTML + JSON.

The fleet database is fed by real sealed records (fleet_fixtures); the advisories
are the shipped ones under advisories/; SBOMs are CycloneDX documents stored as
repository targets the way `release publish` names them (<sha256>.<model>-<v>.cdx.json).
"""
from __future__ import annotations

import hashlib
import json
import re
import os
import shutil
import struct
import subprocess
import zlib
from html.parser import HTMLParser
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner

from host_tools.cli.main import cli
from host_tools.fleet.advisories import AdvisoryError, load_dir, parse, version_key
from host_tools.fleet.assess import assess, fails, json_schema, worst
from host_tools.fleet import charts
from host_tools.fleet.report import render_html
from host_tools.fleet import FleetReader

from fleet_fixtures import Fleet

ADVISORIES = Path(__file__).resolve().parents[2] / "advisories"


def sbom(targets: Path, model: str, version: str, components: list[tuple[str, str, str]]) -> None:
    doc = {"bomFormat": "CycloneDX", "specVersion": "1.6",
           "metadata": {"component": {"type": "firmware", "name": f"medsentry-{model}", "version": version}},
           "components": [{"type": "platform" if n == "micropython" else "library", "name": n, "version": v,
                           "purl": p} for n, v, p in components]
           + [{"type": "file", "name": "agent/main.mpy", "version": version}]}
    data = json.dumps(doc).encode()
    d = targets / model
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{hashlib.sha256(data).hexdigest()}.{model}-{version}.cdx.json").write_bytes(data)


MP = "pkg:github/micropython/micropython@{}"
TLS = "pkg:github/Mbed-TLS/mbedtls@{}"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    f = Fleet(tmp_path_factory.mktemp("assess"))
    targets = f.workdir / "repository" / "targets"
    sbom(targets, "pump-v2", "1.0.0", [("micropython", "1.23.0", MP.format("1.23.0")),
                                       ("mbedtls", "2.28.3", TLS.format("2.28.3"))])
    sbom(targets, "pump-v2", "1.1.0", [("micropython", "1.28.0", MP.format("1.28.0")),
                                       ("mbedtls", "3.6.7", TLS.format("3.6.7"))])
    sbom(targets, "pump-v2", "1.2.0", [("micropython", "1.28.0", MP.format("1.28.0"))])
    (f.workdir / "release").mkdir()
    (f.workdir / "release" / "recalls.json").write_text(json.dumps(
        {"recalls": [{"model": "pump-v2", "version": "1.2.0", "reason": "pump stalls at 0.1 ml/h"}]}))
    for dev, fw in (("pump-old", "1.0.0"), ("pump-new", "1.1.0"), ("pump-bad", "1.2.0")):
        f.issue(dev, "pump-v2")
        assert f.status(dev, f.t0, fw=fw) == "accepted"
        for i in range(3):
            f.vitals(dev, f.t0 + 1 + i, hr=70 + i)
        assert f.update(dev, f.t0 + 4, fw, step="checking", version=fw) == "accepted"
        assert f.update(dev, f.t0 + 5, fw, step="up_to_date", version=fw) == "accepted"
    f.issue("pump-cert", "pump-v2", days=5)
    f.status("pump-cert", f.t0, fw="1.1.0")
    yield f
    f.close()


def by_id(rep):
    return {d["device_id"]: d for d in rep["devices"]}


def kinds(d):
    return {(x["kind"], x.get("advisory")) for x in d["findings"]}


def test_version_ranges():
    adv = parse(json.loads((ADVISORIES / "CVE-2024-23170.json").read_text()))
    assert adv.matches("mbedtls", "2.28.6") and not adv.matches("mbedtls", "2.28.7")
    assert adv.matches("x", "3.5.1", "pkg:github/Mbed-TLS/mbedtls@3.5.1")
    assert not adv.matches("mbedtls", "3.5.2") and not adv.matches("mbedtls", "3.6.0")
    assert not adv.matches("openssl", "1.0.0")
    assert version_key("v1.24.0") == version_key("1.24") > version_key("1.23.9")
    with pytest.raises(AdvisoryError):
        parse({"id": "X"})
    # today's package SBOMs name the runtime "mpy 6.3 (mpy-cross 1.29.0)": not a version, never matched
    with pytest.raises(AdvisoryError):
        version_key("mpy 6.3 (mpy-cross 1.29.0)")
    mp = parse(json.loads((ADVISORIES / "CVE-2024-8946.json").read_text()))
    assert not mp.matches("micropython", "mpy 6.3 (mpy-cross 1.29.0)") and mp.matches("micropython", "1.23.0")
    # only the release the record names (its fix is a commit: the GIT range is not compared)
    assert not mp.matches("micropython", "1.22.2") and not mp.matches("micropython", "1.24.0")
    # a pre-release sorts below its release, above the one before
    assert version_key("1.28.9") < version_key("1.29.0-preview") < version_key("1.29.0")
    assert version_key("1.2") < version_key("1.2.0.5")


def test_findings(fleet):
    rep = assess(fleet.workdir, ADVISORIES, now=fleet.t0 + 10)
    d = by_id(rep)
    old = kinds(d["pump-old"])
    assert {("vulnerable", "CVE-2024-8946"), ("vulnerable", "CVE-2024-23170"),
            ("vulnerable", "MEDSENTRY-2026-0001"), ("behind", None)} <= old
    assert ("vulnerable", "CVE-2024-8947") not in old  # fixed in 1.23.0
    assert ("vulnerable", "CVE-2025-27809") in old  # 2.28.3 < 2.28.10
    assert ("vulnerable", "CVE-2026-34873") not in old  # 3.5.0 and later only
    assert kinds(d["pump-new"]) == set()
    bad = kinds(d["pump-bad"])
    assert ("recalled", None) in bad and ("behind", None) not in bad  # 1.2.0 is recalled, 1.1.0 is newest
    assert rep["newest"]["pump-v2"]["version"] == "1.1.0"
    assert [x["severity"] for x in d["pump-cert"]["findings"]] == ["high"]
    assert d["pump-cert"]["findings"][0]["kind"] == "cert_expiring"
    # the riskiest first; scores are the sums of the findings' weights
    assert rep["devices"][0]["device_id"] in ("pump-old", "pump-bad") and d["pump-new"]["risk"] == 0
    assert rep["fleet_by_version"] == {"pump-v2 1.0.0": 1, "pump-v2 1.1.0": 2, "pump-v2 1.2.0": 1}
    assert worst(rep) == "critical" and fails(rep, "high") and fails(rep, "critical")
    # later: everyone silent, pump-cert's certificate expired
    late = by_id(assess(fleet.workdir, ADVISORIES, now=fleet.t0 + 6 * 86400))
    assert ("silent", None) in kinds(late["pump-new"])
    assert [x["severity"] for x in late["pump-cert"]["findings"] if x["kind"] == "cert_expiring"] == ["critical"]


def test_bad_advisory_is_reported(tmp_path):
    (tmp_path / "good.json").write_text((ADVISORIES / "CVE-2024-8946.json").read_text())
    (tmp_path / "broken.json").write_text("{not json")
    (tmp_path / "bad-range.json").write_text(json.dumps(
        {"id": "X-1", "affected": [{"package": {"name": "m"}, "ranges": [{"events": [{"fixed": "abc"}]}]}]}))
    advs, problems = load_dir(tmp_path)
    assert [a.id for a in advs] == ["CVE-2024-8946"] and len(problems) == 2


class _Doc(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def figure(html: str, fig_id: str) -> _Doc:
    """The parsed contents of one <figure id=...> of the report."""
    m = re.search(rf'<figure id="{fig_id}">(.*?)</figure>', html, re.S)
    assert m, fig_id
    doc = _Doc()
    doc.feed(m.group(1))
    return doc


def test_chart_labels_from_devices_are_escaped():
    """A device id or event label is text in the SVG, never markup: an id made
    of HTML stays visible text and adds no element or script to the report."""
    evil = '<img src=x onerror=alert(1)></svg><script>alert(2)</script>'
    svg = str(charts.bars("chart-x", {evil: 2, "pump-v2 1.1.0": 1}))
    svg += str(charts.timeline("chart-y", [{"t": 1.0e9, "row": 1, "label": evil, "series": evil, "color": "#123456"},
                                            {"t": 1.0e9 + 5, "row": 0, "label": "x", "series": "s", "color": "#000"}]))
    doc = _Doc()
    doc.feed(svg)
    names = {t for t, _ in doc.tags}
    assert "img" not in names and "script" not in names, names
    assert evil in "".join(doc.text)


def test_html_self_contained(fleet, tmp_path):
    rep = assess(fleet.workdir, ADVISORIES, now=fleet.t0 + 10)
    reader = FleetReader(fleet.workdir / "fleet.db")
    html = render_html(rep, reader)
    reader.close()
    doc = _Doc()
    doc.feed(html)
    names = [t for t, _ in doc.tags]
    assert "script" not in names and "link" not in names
    assert not [a for _, a in doc.tags if any(str(v).startswith(("http", "//")) for k, v in a.items()
                                             if k in ("src", "href"))]
    rows = [a["data-device"] for t, a in doc.tags if t == "tr" and "data-device" in a]
    assert rows == [d["device_id"] for d in rep["devices"]]
    ids = {a.get("id") for _, a in doc.tags}
    assert {"chart-versions", "chart-severity", "chart-latency", "chart-vitals", "chart-events", "devices"} <= ids
    # the focus device's two update reports on the events timeline, each titled for hover
    events = figure(html, "chart-events")
    assert sum(1 for t, a in events.tags if t == "circle" and "dot" in a.get("class", "")) == 2
    assert "update: up_to_date 1." in "".join(events.text)
    # one bar per version, per severity, per device behind
    for fig_id, n in (("chart-versions", len(rep["fleet_by_version"])),
                      ("chart-severity", len(rep["findings_by_severity"])),
                      ("chart-latency", sum(1 for d in rep["devices"] for x in d["findings"] if x["kind"] == "behind"))):
        bars = [a for t, a in figure(html, fig_id).tags if t == "rect" and "reactive" in a.get("class", "")]
        assert len(bars) == n > 0, fig_id
    assert sum(1 for t, a in figure(html, "chart-vitals").tags if t == "path" and "nofill" in a.get("class", "")) == 1
    assert "pump stalls at 0.1 ml/h" in "".join(doc.text)


def test_cli(fleet, tmp_path):
    out = tmp_path / "report.html"
    args = ["--workdir", str(fleet.workdir), "assess", "--advisories", str(ADVISORIES)]
    r = CliRunner().invoke(cli, args + ["--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["schema"] == "medsentry-assessment/1" and out.read_text().startswith("<!DOCTYPE html>")
    r = CliRunner().invoke(cli, args + ["--fail-on", "critical"])
    assert r.exit_code == 3 and "worst finding: critical" in r.output
    r = CliRunner().invoke(cli, ["--workdir", str(fleet.workdir), "assess", "--advisories", str(tmp_path / "no")])
    assert r.exit_code == 1 and "no advisory folder" in r.output and "Traceback" not in r.output


def test_json_schema(fleet):
    """`assess --json` output validates against the shipped schema; a report with a
    wrong field (an unknown finding kind, a severity, a risk as text) does not."""
    r = CliRunner().invoke(cli, ["--workdir", str(fleet.workdir), "assess", "--advisories", str(ADVISORIES),
                                 "--json"])
    assert r.exit_code == 0, r.output
    rep, schema = json.loads(r.output), json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(rep, schema)
    assert any(x["kind"] == "vulnerable" for d in rep["devices"] for x in d["findings"])
    assert all(d["admission"] in ("admit", "quarantine", "refuse") and d["admission_reason"] for d in rep["devices"])
    for path, bad in ((("devices", 0, "findings", 0, "kind"), "vulnrable"),
                      (("devices", 0, "findings", 0, "severity"), "urgent"),
                      (("devices", 0, "risk"), "17"),
                      (("devices", 0, "admission"), "allow"),
                      (("devices", 0, "admission_reason"), ""),
                      (("findings_by_severity",), {"high": 1}),
                      (("generated_at",), "yesterday")):
        broken = json.loads(r.output)
        node = broken
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = bad
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, schema)


def png_size_and_colors(data: bytes) -> tuple[int, int, int]:
    """(width, height, distinct byte values in the decoded scanlines) of a PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    pos, idat = 8, b""
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if kind == b"IDAT":
            idat += data[pos + 8:pos + 8 + n]
        pos += 12 + n
    return width, height, len(set(zlib.decompress(idat)))


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu",
                           f"--user-data-dir={profile}", *args], capture_output=True, timeout=120)


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian chromium not installed (make setup)")
def test_report_in_headless_chromium(fleet, tmp_path):
    out = tmp_path / "report.html"
    r = CliRunner().invoke(cli, ["--workdir", str(fleet.workdir), "assess", "--advisories", str(ADVISORIES),
                                 "--out", str(out)])
    assert r.exit_code == 0, r.output
    dom = chromium("--dump-dom", out.as_uri(), profile=tmp_path / "profile")
    assert dom.returncode == 0, dom.stderr[-2000:]
    doc = _Doc()
    doc.feed(dom.stdout.decode())
    rows = [a["data-device"] for t, a in doc.tags if t == "tr" and "data-device" in a]
    assert rows[-1] == "pump-new" and set(rows) == {"pump-old", "pump-new", "pump-bad", "pump-cert"}
    assert "CVE-2024-8946" in "".join(doc.text)
    assert {"chart-versions", "chart-severity", "chart-latency", "chart-vitals", "chart-events"} <= {
        a.get("id") for _, a in doc.tags}
    shot = tmp_path / "report.png"
    s = chromium(f"--screenshot={shot}", "--window-size=1200,1600", out.as_uri(), profile=tmp_path / "profile")
    assert s.returncode == 0 and shot.is_file(), s.stderr[-2000:]
    w, h, colors = png_size_and_colors(shot.read_bytes())
    assert (w, h) == (1200, 1600) and colors > 20  # text, bars and badges were drawn
    if os.environ.get("MEDSENTRY_KEEP_SCREENSHOT"):
        shutil.copy(shot, os.environ["MEDSENTRY_KEEP_SCREENSHOT"])


def _package_sbom(targets: Path, model: str, version: str, micropython: str, mbedtls: str) -> None:
    """The SBOM `package build` writes (make_sbom), for a VM with these versions,
    stored as `release publish` names its target."""
    from host_tools.release.runtime import manifest
    from host_tools.release.sbom import make_sbom

    rt = manifest()
    rt["micropython"]["version"], rt["mbedtls"]["version"] = micropython, mbedtls
    data = make_sbom(model=model, version=version, compatible_models=[model], security_counter=1,
                     min_base_version="0.0.0", files=[{"path": "agent/main.mpy", "size": 1, "sha256": "0" * 64}],
                     runtime="mpy-cross", lib_modules=["ssl"], runtime_manifest=rt)
    d = targets / model
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{hashlib.sha256(data).hexdigest()}.{model}-{version}.cdx.json").write_bytes(data)


def test_runtime_advisories_match_package_sboms(tmp_path):
    """Real package SBOMs: an affected mbedTLS / MicroPython gives the finding,
    an unaffected one does not (ranges from the shipped advisories)."""
    f = Fleet(tmp_path)
    try:
        targets = f.workdir / "repository" / "targets"
        _package_sbom(targets, "pump-v2", "2.0.0", "1.27.0", "3.6.5")  # CVE-2026-1998, -34873, -49300
        _package_sbom(targets, "pump-v2", "2.1.0", "1.29.0-preview", "3.6.6")  # today's VM: -49300 only
        _package_sbom(targets, "pump-v2", "2.2.0", "1.29.0", "3.6.7")  # none
        for dev, fw in (("p-old", "2.0.0"), ("p-now", "2.1.0"), ("p-fixed", "2.2.0")):
            f.issue(dev, "pump-v2")
            assert f.status(dev, f.t0, fw=fw) == "accepted"
        d = by_id(assess(f.workdir, ADVISORIES, now=f.t0 + 10))
        vuln = {dev: {x["advisory"] for x in d[dev]["findings"] if x["kind"] == "vulnerable"} for dev in d}
        assert vuln["p-old"] == {"CVE-2026-1998", "CVE-2026-34873", "CVE-2026-49300"}
        assert vuln["p-now"] == {"CVE-2026-49300"}
        assert vuln["p-fixed"] == set()
        hit = [x for x in d["p-old"]["findings"] if x.get("advisory") == "CVE-2026-34873"][0]
        assert hit["component"] == "mbedtls 3.6.5" and hit["severity"] == "high"
        assert {c["name"]: c["version"] for c in d["p-now"]["components"]} == {
            "medsentry-pump-v2": "2.1.0", "micropython": "1.29.0-preview", "mbedtls": "3.6.6", "ssl": "0.2.1"}
    finally:
        f.close()


def test_stale_tuf_metadata(tmp_path):
    """Devices report the TUF metadata they trust in their posture (agent/updates.py
    _note_tuf: [version, expiry] per top-level role); assess compares it with the
    repository's timestamp.json."""
    import os

    from tuf_repo import TufRepo

    f = Fleet(tmp_path)
    try:
        repo = TufRepo(f.workdir / "repository")
        repo.add_target("pump-v2/a.bin", b"a")
        repo.publish()
        repo.add_target("pump-v2/b.bin", b"b")
        repo.publish()
        ts = json.loads((f.workdir / "repository" / "metadata" / "timestamp.json").read_text())["signed"]
        current, snap = ts["version"], ts["meta"]["snapshot.json"]["version"]
        assert current >= 3
        now = f.t0 + 10
        later = now + 30 * 86400
        reports = {"p-current": {"timestamp": [current, later], "snapshot": [snap, later], "root": [1, later]},
                   "p-behind": {"timestamp": [current - 2, later], "snapshot": [snap - 2, later]},
                   "p-expired": {"timestamp": [current, now - 60], "snapshot": [snap, later]},
                   "p-old-fw": {"root": [1, later], "targets": [1, later]}}
        for dev, tuf in reports.items():
            f.issue(dev, "pump-v2")
            assert f.status(dev, now - 5, fw="1.0.0") == "accepted"
            assert f.status(dev, now - 4, state="posture", tuf=tuf, integrity={"ok": True}) == "accepted"
        f.issue("p-silent", "pump-v2")
        f.status("p-silent", now - 5, fw="1.0.0")

        def stale(at):
            d = by_id(assess(f.workdir, ADVISORIES, now=at))
            return {dev: [(x["severity"], x["text"]) for x in d[dev]["findings"] if x["kind"] == "stale_tuf"]
                    for dev in d}

        # the repository's newest timestamp was written just now: devices get a check period to catch up
        got = stale(now)
        assert got["p-behind"] == [] and got["p-expired"][0][0] == "high"
        assert "timestamp expired" in got["p-expired"][0][1]
        # ... and two days later the device that still trusts an older one is stale
        path = f.workdir / "repository" / "metadata" / "timestamp.json"
        os.utime(path, (now - 2 * 86400, now - 2 * 86400))
        got = stale(now)
        assert got["p-behind"] == [("medium", f"trusts TUF timestamp v{current - 2}, repository at v{current} for 48 h")]
        assert got["p-current"] == [] and got["p-old-fw"] == [] and got["p-silent"] == []
        assert len(got["p-expired"]) == 1 and got["p-expired"][0][0] == "high"
        rep = assess(f.workdir, ADVISORIES, now=now)
        jsonschema.validate(rep, json_schema())
        assert rep["repository_tuf"]["timestamp"] == current
        assert by_id(rep)["p-current"]["tuf"]["timestamp"] == [current, later]
    finally:
        f.close()
