"""`medsentry broker`: Mosquitto configuration (TLS, ACL, CRL) and a local runner."""
from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import click

from host_tools.broker import Broker, BrokerError, BrokerSettings, write_config
from host_tools.pki import FleetPKI, PkiError


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@click.group("broker")
def cli() -> None:
    """Fleet MQTT broker (Mosquitto 2.0) with mutual TLS and per-device ACLs."""


@cli.command("config")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Output directory [default: <workdir>/broker].")
@click.option("--host", default="127.0.0.1", show_default=True, help="Listener address.")
@click.option("--port", default=8883, show_default=True, type=int)
@click.option("--persistence/--no-persistence", default=True, show_default=True)
@click.option("--log-file", type=click.Path(dir_okay=False), default=None)
@click.pass_context
def config(ctx: click.Context, out: str | None, host: str, port: int, persistence: bool,
           log_file: str | None) -> None:
    """Write mosquitto.conf and acl (run with: mosquitto -c <out>/mosquitto.conf)."""
    pki = FleetPKI(ctx.obj["workdir"])
    out_dir = Path(out) if out else pki.workdir / "broker"
    settings = BrokerSettings(host=host, port=port, persistence=persistence,
                              persistence_dir=out_dir.resolve() / "persistence",
                              log_file=Path(log_file).resolve() if log_file else None)
    try:
        conf, acl = write_config(pki, settings, out_dir)
    except PkiError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"wrote {conf}\nwrote {acl}")
    click.echo("note: Mosquitto started as root drops to user `mosquitto`; make the server key "
               "readable to it (or add `user root` for a local test setup).")


@cli.command("run")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=None, help="TCP port to listen on [default: a free port].")
@click.option("--duration", type=float, default=None, help="Stop after N seconds [default: run until Ctrl-C].")
@click.option("--cluster", "nodes", type=click.IntRange(1, 9), default=None,
              help="Fleet deployment: a RabbitMQ cluster of N local nodes (MQTT plugin) instead "
                   "of Mosquitto; writes the nodes' MQTT and AMQP endpoints to address.json.")
@click.option("--schedulers", type=click.IntRange(1, 1024), default=1, show_default=True,
              help="With --cluster: Erlang schedulers (cores) each node may use; 1 keeps local "
                   "nodes from crowding a small machine.")
@click.pass_context
def run(ctx: click.Context, host: str, port: int | None, duration: float | None, nodes: int | None,
        schedulers: int) -> None:
    """Run Mosquitto in the foreground on a loopback port; writes <workdir>/broker/address.json."""
    pki = FleetPKI(ctx.obj["workdir"])
    lock = _one_broker(pki.workdir / "broker")
    try:
        if nodes is not None:
            _run_cluster(pki, host, nodes, duration, schedulers)
        else:
            _run_mosquitto(pki, host, port, duration)
    finally:
        os.close(lock)


def _run_mosquitto(pki: FleetPKI, host: str, port: int | None, duration: float | None) -> None:
    run_dir = pki.workdir / "broker" / "run"
    broker = Broker(pki, run_dir, host=host, port=port, persistence=True)
    try:
        broker.start()
    except (BrokerError, PkiError) as exc:
        raise click.ClickException(str(exc)) from None
    # Mosquitto runs in its own session: stop it ourselves on SIGTERM as on Ctrl-C.
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_interrupt)
    addr = pki.workdir / "broker" / "address.json"
    try:
        # Every collector identity gets its persistent session now: records the
        # boards publish before the first `medsentry collector` are queued for it.
        from host_tools.collector import prime_session

        for name in pki.collector_identities():
            prime_session(pki, broker.host, broker.port, name)
    except (ConnectionError, PkiError) as exc:
        broker.stop()
        raise click.ClickException(str(exc)) from None
    addr.write_text(json.dumps({"host": broker.host, "port": broker.port}) + "\n")
    click.echo(f"broker listening on {broker.host}:{broker.port} (log {broker.log_path}); "
               f"collector sessions open: {', '.join(pki.collector_identities()) or 'none'}; Ctrl-C stops")
    try:
        deadline = None if duration is None else time.monotonic() + duration
        while broker.running and (deadline is None or time.monotonic() < deadline):
            time.sleep(0.2)
        if not broker.running:
            raise click.ClickException(f"mosquitto stopped:\n{broker.log_text()[-2000:]}")
    except KeyboardInterrupt:
        pass
    finally:
        broker.stop()
        addr.unlink(missing_ok=True)


def _one_broker(broker_dir: Path) -> int:
    """Hold <workdir>/broker/run.lock for this `broker run` (released when the
    process ends, however it ends): a second one in the same work dir would
    share the first one's persistence file and address record."""
    import fcntl

    broker_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(broker_dir / "run.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        addr = broker_dir / "address.json"
        where = f" on {addr.read_text().strip()}" if addr.exists() else ""
        raise click.ClickException(f"a broker already runs in this work dir{where} "
                                   f"(another `medsentry broker run`); stop it first") from None
    return fd


def _run_cluster(pki: FleetPKI, host: str, nodes: int, duration: float | None, schedulers: int) -> None:
    from host_tools.broker.cluster import RabbitCluster

    cluster = RabbitCluster(pki, pki.workdir / "broker" / "cluster", nodes=nodes, host=host,
                            schedulers=schedulers)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_interrupt)
    addr = pki.workdir / "broker" / "address.json"
    try:
        try:
            cluster.start()
        except (BrokerError, PkiError, OSError) as exc:
            raise click.ClickException(str(exc)) from None
        host0, port0 = cluster.endpoints[0]
        addr.write_text(json.dumps({"host": host0, "port": port0, "mqtt": cluster.endpoints,
                                    "amqp": cluster.amqp_endpoints}) + "\n")
        amqp = ",".join(f"{h}:{p}" for h, p in cluster.amqp_endpoints)
        click.echo(f"cluster of {nodes}: MQTT {cluster.endpoints}; collectors: "
                   f"medsentry collector --amqp {amqp} --identity NAME --shard I/N "
                   f"(collector I of N); Ctrl-C stops")
        deadline = None if duration is None else time.monotonic() + duration
        while deadline is None or time.monotonic() < deadline:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()
        addr.unlink(missing_ok=True)
