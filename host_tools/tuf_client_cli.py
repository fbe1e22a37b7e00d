"""`medsentry-tuf-client`: run the device TUF client from the host.

The work is done by ``updater/tuf/client_main.py`` running on the MicroPython
VM (``host_tools.mpvm``, heap 256 KiB by default); this module only builds the
command line, launches it, streams its output and maps the result to exit
status 0 (success) or 1 (any failure, usage errors included - never another
code).

Interface (options go before the command)::

    medsentry-tuf-client --metadata-dir DIR init TRUSTED_ROOT
    medsentry-tuf-client --metadata-dir DIR --metadata-url URL refresh
    medsentry-tuf-client --metadata-dir DIR --metadata-url URL \\
        --target-name PATH [--target-name PATH ...] \\
        --target-base-url URL --target-dir DIR download

Other options: ``--ca-file`` (CA the HTTPS server must chain to),
``--heap`` (VM heap, e.g. 256k), ``--timeout`` (seconds for the whole run),
``--connect-timeout``/``--read-timeout``/``--min-speed``/``--grace-ms``
(transport limits, see updater/tuf/fetcher.py), ``--envelope-type
metadata|simple`` (traditional TUF metadata, the default, or DSSE envelopes,
as ngclient's ``UpdaterConfig.envelope_type``; it applies to ``init`` too),
``--max-root-length``/``--max-timestamp-length``/``--max-snapshot-length``/
``--max-targets-length`` (size caps in bytes; the parsed document lives in
the heap, so raise ``--heap`` with them), ``--stats`` (print time and
peak heap). Hidden: ``--runtime cpython`` runs the very same device code on
CPython (tests use it to exercise both runtimes).

Library use (other tools and tests)::

    from host_tools.tuf_client_cli import run_client
    proc = run_client(["--metadata-dir", d, "init", root_path], runtime="micropython")
    proc.returncode, proc.stdout

The device reads the clock with ``time.time()``, so ``faketime`` in front of
the command changes what it considers expired.
"""
from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence

import click

from host_tools import mpvm

DEVICE_MODULE = "updater.tuf.client_main"
RUNTIMES = ("micropython", "cpython")
ENVELOPE_TYPES = ("metadata", "simple")


def device_command(args: Sequence[str], *, runtime: str = "micropython", heap: str = mpvm.DEFAULT_HEAP) -> tuple[list[str], dict[str, str]]:
    """Command line and environment that run the device client with `args`."""
    root = str(mpvm.REPO_ROOT)
    if runtime == "micropython":
        mpvm.parse_size(heap)
        cmd = [mpvm.micropython_path(), "-X", f"heapsize={heap}", "-m", DEVICE_MODULE, *args]
        env = mpvm.vm_env([root])
    elif runtime == "cpython":
        cmd = [sys.executable, "-m", DEVICE_MODULE, *args]
        env = dict(os.environ)
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    else:
        raise ValueError(f"unknown runtime {runtime!r} (use one of {RUNTIMES})")
    return cmd, env


def run_client(
    args: Sequence[str],
    *,
    runtime: str = "micropython",
    heap: str = mpvm.DEFAULT_HEAP,
    timeout: float = 120,
    prefix: Sequence[str] = (),
) -> subprocess.CompletedProcess:
    """Run the device client once and capture its output (text).

    `prefix` is prepended to the command (e.g. ``["faketime", "2040-01-01"]``).
    The return code is the device's own (0 or 1); a timeout raises
    subprocess.TimeoutExpired."""
    cmd, env = device_command(args, runtime=runtime, heap=heap)
    return subprocess.run(
        [*prefix, *cmd], env=env, cwd=str(mpvm.REPO_ROOT), capture_output=True, text=True, timeout=timeout
    )


def _device_args(opts: dict, command: list[str]) -> list[str]:
    out: list[str] = []
    for flag, key in (
        ("--metadata-dir", "metadata_dir"),
        ("--metadata-url", "metadata_url"),
        ("--target-base-url", "target_base_url"),
        ("--target-dir", "target_dir"),
        ("--ca-file", "ca_file"),
        ("--connect-timeout", "connect_timeout"),
        ("--read-timeout", "read_timeout"),
        ("--min-speed", "min_speed"),
        ("--grace-ms", "grace_ms"),
        ("--envelope-type", "envelope_type"),
        ("--max-root-length", "max_root_length"),
        ("--max-timestamp-length", "max_timestamp_length"),
        ("--max-snapshot-length", "max_snapshot_length"),
        ("--max-targets-length", "max_targets_length"),
    ):
        if opts.get(key) is not None:
            out += [flag, str(opts[key])]
    for name in opts.get("target_name") or ():
        out += ["--target-name", name]
    if opts.get("stats"):
        out.append("--stats")
    return out + command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--metadata-dir", required=True, type=click.Path(file_okay=False), help="Trusted metadata directory.")
@click.option("--metadata-url", help="Repository metadata base URL.")
@click.option("--target-name", multiple=True, help="Target path to download (repeatable).")
@click.option("--target-base-url", help="Targets base URL.")
@click.option("--target-dir", type=click.Path(file_okay=False), help="Where targets are stored.")
@click.option("--ca-file", type=click.Path(dir_okay=False), help="CA certificate for HTTPS.")
@click.option("--connect-timeout", type=float)
@click.option("--read-timeout", type=float)
@click.option("--min-speed", type=int, help="Minimum average bytes/s after the grace period.")
@click.option("--grace-ms", type=int)
@click.option(
    "--envelope-type",
    type=click.Choice(ENVELOPE_TYPES),
    help="Metadata envelope: metadata (traditional TUF JSON, default) or simple (DSSE), as ngclient's envelope_type.",
)
@click.option("--max-root-length", type=click.IntRange(min=1), help="Size cap of root metadata in bytes.")
@click.option("--max-timestamp-length", type=click.IntRange(min=1), help="Size cap of timestamp metadata in bytes.")
@click.option("--max-snapshot-length", type=click.IntRange(min=1), help="Size cap of snapshot metadata in bytes.")
@click.option(
    "--max-targets-length", type=click.IntRange(min=1), help="Size cap of each targets metadata file in bytes (raise --heap with it)."
)
@click.option("--heap", default=mpvm.DEFAULT_HEAP, show_default=True, help="MicroPython heap size.")
@click.option("--timeout", default=600.0, show_default=True, help="Seconds before the run is killed.")
@click.option("--stats", is_flag=True, help="Print time and peak heap.")
@click.option("--runtime", type=click.Choice(RUNTIMES), default="micropython", hidden=True)
@click.pass_context
def cli(ctx: click.Context, **opts) -> None:
    """Device TUF client (runs on the MicroPython VM)."""
    ctx.obj = opts


def _launch(ctx: click.Context, command: list[str]) -> None:
    opts = ctx.obj
    cmd, env = device_command(_device_args(opts, command), runtime=opts["runtime"], heap=opts["heap"])
    try:
        proc = subprocess.run(cmd, env=env, cwd=str(mpvm.REPO_ROOT), timeout=opts["timeout"])
    except subprocess.TimeoutExpired:
        click.echo(f"error: the client did not finish within {opts['timeout']} s", err=True)
        ctx.exit(1)
    except (OSError, mpvm.VMNotFound) as e:
        click.echo(f"error: cannot start the client: {e}", err=True)
        ctx.exit(1)
    ctx.exit(0 if proc.returncode == 0 else 1)


@cli.command()
@click.argument("trusted_root", type=click.Path(dir_okay=False))
@click.pass_context
def init(ctx: click.Context, trusted_root: str) -> None:
    """Take TRUSTED_ROOT as the trusted root (no network)."""
    _launch(ctx, ["init", os.path.abspath(trusted_root)])


@cli.command()
@click.pass_context
def refresh(ctx: click.Context) -> None:
    """Run the top-level update workflow."""
    _launch(ctx, ["refresh"])


@cli.command()
@click.pass_context
def download(ctx: click.Context) -> None:
    """Refresh, then download each --target-name in order."""
    _launch(ctx, ["download"])


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry: exit status is 0 or 1, nothing else."""
    try:
        rv = cli.main(args=list(argv) if argv is not None else None, prog_name="medsentry-tuf-client", standalone_mode=False)
    except click.exceptions.Exit as e:
        sys.exit(0 if e.exit_code == 0 else 1)
    except click.ClickException as e:
        e.show()
        sys.exit(1)
    except click.exceptions.Abort:
        sys.exit(1)
    except SystemExit as e:
        sys.exit(0 if e.code in (0, None) else 1)
    sys.exit(0 if rv in (0, None) else 1)


if __name__ == "__main__":
    main()
