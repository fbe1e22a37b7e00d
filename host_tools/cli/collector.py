"""`medsentry collector`: receive, verify, decrypt and store sealed telemetry."""
from __future__ import annotations

import json
import queue
import signal
import sys
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

import click

from host_tools.collector import Outcome, open_collector
from host_tools.collector.dbconn import record_fleet_db, redacted
from host_tools.collector.progress import Progress, follow_line
from host_tools.pki import PkiError


def broker_address(workdir: str, host: str | None, port: int | None) -> tuple[str, int]:
    """Explicit --host/--port, else <workdir>/broker/address.json from `broker run`."""
    if port is not None:
        return host or "127.0.0.1", port
    addr = Path(workdir) / "broker" / "address.json"
    try:
        d = json.loads(addr.read_text())
        return host or d["host"], int(d["port"])
    except (OSError, ValueError, KeyError):
        raise click.ClickException(f"no --port given and no running broker recorded in {addr}") from None


class _ProgressView:
    """The progress line while the collector runs: a rich live line when stderr is a
    terminal, else a plain line every ``every`` seconds; a last line at the end.

    ``emit(text)`` prints a --follow record on stdout. With the live line, one
    printer thread does all terminal output (records from a queue, then the line),
    so a record never lands inside the line being redrawn."""

    def __init__(self, progress: Progress, every: float, quiet: bool) -> None:
        self.progress = progress
        self.every = every
        self.quiet = quiet
        self.live: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._queue: queue.Queue[str] = queue.Queue()
        self._lock = threading.Lock()
        self._same_terminal = False

    def __enter__(self) -> "_ProgressView":
        if self.quiet:
            return self
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.live import Live
            from rich.text import Text

            class _Line:
                def __init__(self, progress: Progress) -> None:
                    self.progress = progress

                def __rich__(self) -> Text:
                    return Text(self.progress.line(), style="bold", no_wrap=True, overflow="ellipsis")

            self._same_terminal = sys.stdout.isatty()
            self.live = Live(_Line(self.progress), console=Console(stderr=True), auto_refresh=False,
                             transient=True, redirect_stdout=False, redirect_stderr=False)
            self.live.start(refresh=True)
            self._thread = threading.Thread(target=self._printer, name="collector-live", daemon=True)
        else:
            self._thread = threading.Thread(target=self._plain, name="collector-progress", daemon=True)
        self._thread.start()
        return self

    def emit(self, text: str) -> None:
        if self.live is not None:
            self._queue.put(text)
            return
        with self._lock:
            click.echo(text)
            sys.stdout.flush()

    def _plain(self) -> None:
        while not self._stop.wait(self.every):
            click.echo(self.progress.line(), err=True)

    def _printer(self) -> None:
        while True:
            try:
                texts = [self._queue.get(timeout=0.5)]
            except queue.Empty:
                texts = []
            while texts and len(texts) < 200:
                try:
                    texts.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if texts:
                if self._same_terminal:
                    # the live line is the cursor's line: clear it, the records
                    # take its place and the line is drawn again below them
                    self.live.console.file.write("\r\x1b[2K")
                    self.live.console.file.flush()
                for t in texts:
                    click.echo(t)
                sys.stdout.flush()
            if self._stop.is_set() and self._queue.empty():
                return
            self.live.refresh()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.live is not None:
            self.live.stop()
        if not self.quiet:
            click.echo(self.progress.line(), err=True)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@click.command("collector")
@click.option("--host", default=None, help="Broker address [default: from `broker run`, else 127.0.0.1].")
@click.option("--port", type=int, default=None)
@click.option("--duration", type=float, default=None, help="Stop after N seconds.")
@click.option("--max-records", type=int, default=None, help="Stop after N accepted records.")
@click.option("--identity", default="collector", show_default=True,
              help="Client identity under pki/clients (one per collector instance: "
                   "`medsentry pki issue-service collector-b`).")
@click.option("--db", "db_url", default=None, envvar="MEDSENTRY_DB",
              help="sqlite:///PATH or postgresql://USER@HOST:PORT/DB [default: sqlite <workdir>/fleet.db]. "
                   "Recorded in <workdir>/fleet-db.url, so `fleet`, `assess`, `alerts`, `events`, "
                   "`telemetry` and `command` read the same store.")
@click.option("--amqp", default=None, metavar="HOST:PORT,...",
              help="Fleet cluster: consume the collector partitions over AMQPS from these "
                   "nodes (competing collectors) instead of subscribing over MQTT.")
@click.option("--shard", default="0/1", show_default=True, metavar="I/N",
              help="With --amqp: collector I of N started together; it claims partitions "
                   "k with k % N == I first and stands by for the others.")
@click.option("--follow", is_flag=True,
              help="Print each stored record like `mosquitto_sub -v`: the topic, then the decrypted "
                   "record as compact JSON (stdout; progress goes to stderr).")
@click.option("--progress-every", type=click.FloatRange(min=0.1), default=5.0, show_default=True,
              help="Seconds between progress lines when stderr is not a terminal "
                   "(on a terminal: one live line).")
@click.option("--quiet", is_flag=True, help="No progress line.")
@click.pass_context
def cli(ctx: click.Context, host: str | None, port: int | None, duration: float | None,
        max_records: int | None, identity: str, db_url: str | None, amqp: str | None, shard: str,
        follow: bool, progress_every: float, quiet: bool) -> None:
    """Subscribe over mutual TLS; verify, decrypt, de-duplicate and store records in fleet.db.

    While it runs it shows records/s, devices seen and rejections (a live line on a
    terminal, a plain line every --progress-every seconds otherwise)."""
    workdir = ctx.obj["workdir"]
    # SIGTERM (service managers) stops as cleanly as Ctrl-C: commit, ack, disconnect.
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_interrupt)
    if amqp is not None:
        if follow:
            raise click.UsageError("--follow works with the MQTT collector only, not with --amqp")
        _run_amqp(workdir, amqp, identity, db_url, duration, max_records, parse_shard(shard))
        return
    h, p = broker_address(workdir, host, port)
    try:
        col = open_collector(workdir, h, p, db_url=db_url, identity=identity)
    except (PkiError, ConnectionError) as exc:
        raise click.ClickException(str(exc)) from None
    record_fleet_db(workdir, db_url)
    click.echo(f"collector: {h}:{p} -> {redacted(col.db.url)} (Ctrl-C stops)", err=True)
    progress = Progress()
    view = _ProgressView(progress, progress_every, quiet)

    def on_outcome(out: Outcome) -> None:
        progress.add(out)
        if follow:
            text = follow_line(out)
            if text is not None:
                view.emit(text)

    col.on_outcome = on_outcome
    try:
        with view:
            stats = col.run(duration=duration, max_records=max_records)
    except (PkiError, ConnectionError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps({k: v for k, v in stats.items() if v}, sort_keys=True))
    if col.errors:
        raise click.ClickException("; ".join(col.errors))


def parse_endpoints(text: str) -> list[tuple[str, int]]:
    out = []
    for item in text.split(","):
        h, sep, p = item.strip().rpartition(":")
        if not sep or not h or not p.isdigit():
            raise click.BadParameter(f"{item!r} is not HOST:PORT", param_hint="--amqp")
        out.append((h, int(p)))
    return out


def parse_shard(text: str) -> tuple[int, int]:
    i, sep, n = text.partition("/")
    if not sep or not i.isdigit() or not n.isdigit() or not 0 <= int(i) < int(n):
        raise click.BadParameter(f"{text!r} is not I/N with 0 <= I < N", param_hint="--shard")
    return int(i), int(n)


def _run_amqp(workdir: str, amqp: str, identity: str, db_url: str | None, duration: float | None,
              max_records: int | None, shard: tuple[int, int]) -> None:
    from host_tools.collector import FleetDB
    from host_tools.collector.amqp import AmqpCollector, tune_process
    from host_tools.collector.dbconn import DatabaseURLError
    from host_tools.pki import FleetPKI

    endpoints = parse_endpoints(amqp)
    try:
        db = FleetDB(db_url or Path(workdir) / "fleet.db")
    except (DatabaseURLError, RuntimeError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - driver errors (server down, auth) end in a message
        raise click.ClickException(f"database: {type(exc).__name__}: {exc}") from None
    record_fleet_db(workdir, db_url)
    col = AmqpCollector(FleetPKI(workdir), db, identity, endpoints, shard=shard)
    tune_process()  # this process only collects from here on
    click.echo(f"collector {identity}: AMQPS {amqp} -> {redacted(db.url)} (Ctrl-C stops)", err=True)
    try:
        stats = col.run(duration=duration, max_records=max_records)
    except KeyboardInterrupt:
        stats = col.stats
    click.echo(json.dumps({k: v for k, v in stats.items() if v}, sort_keys=True))
    if col.reconnects:
        click.echo(f"collector {identity}: {col.reconnects} reconnects ({col.stalls} for a stall)", err=True)
