"""The fleet cluster's per-client publish limit plugin (broker/rabbit_plugin.py): built
with erlc, or the cluster does not start (fail closed). Its behaviour on a running
cluster: tests/e2e/test_fleet_cluster.py::test_one_device_certificate_cannot_flood_the_cluster."""
from __future__ import annotations

import shutil

import pytest

from host_tools.broker import rabbit_plugin
from host_tools.broker.cluster import RabbitCluster
from host_tools.broker.plugin import PluginBuildError
from host_tools.pki import FleetPKI

pytestmark = pytest.mark.skipif(shutil.which("erlc") is None or not rabbit_plugin.RABBIT_PLUGINS.exists(),
                                reason="needs rabbitmq-server and erlang-base (scripts/setup.sh)")


def test_without_erlc_the_cluster_does_not_start_and_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDSENTRY_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(rabbit_plugin.shutil, "which", lambda name: None)
    pki = FleetPKI(tmp_path / "work")
    pki.init()
    cluster = RabbitCluster(pki, tmp_path / "cluster", nodes=1)
    with pytest.raises(PluginBuildError, match="rabbitmq-server erlang-base"):
        cluster.start()
    assert cluster.procs == [None]  # no node was started without the limit


def test_the_plugin_builds_into_a_plugins_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDSENTRY_CACHE", str(tmp_path / "cache"))
    out = rabbit_plugin.plugins_dir()
    ebin = out / "medsentry_ratelimit-1.0.0" / "ebin"
    assert (ebin / "medsentry_ratelimit.beam").stat().st_size > 0
    assert "{rate, 500}" in (ebin / "medsentry_ratelimit.app").read_text()
    assert rabbit_plugin.plugins_dir() == out  # cached: built once per source version


@pytest.mark.parametrize("rate, burst", [(0, 2000), (500, 0), (-1, -1)])
def test_a_limit_below_one_is_refused(tmp_path, rate, burst):
    with pytest.raises(ValueError, match="want at least 1"):
        RabbitCluster(FleetPKI(tmp_path), tmp_path / "c", rate_limit=rate, rate_burst=burst)
