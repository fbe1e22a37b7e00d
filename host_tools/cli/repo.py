"""`medsentry repo`: serve the repository, show its state, set expiries."""
from __future__ import annotations

from pathlib import Path

import click

from host_tools.cli.keys import ReleaseGroup, no_prompt_option, workdir
from host_tools.release.config import EXPIRY_ROLES, ReleaseConfig
from host_tools.release.layout import Layout


@click.group(cls=ReleaseGroup, name="repo")
def cli() -> None:
    """The TUF repository (<workdir>/repository: metadata/ and targets/)."""


@cli.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=int, default=8080, show_default=True, help="0 picks a free port.")
@click.option("--tls", is_flag=True, help="HTTPS; without --cert a self-signed certificate is made in <workdir>/tls/.")
@click.option("--cert", type=click.Path(dir_okay=False, exists=True), default=None)
@click.option("--key", type=click.Path(dir_okay=False, exists=True), default=None)
@click.option("--head-timeout", type=float, default=10.0, show_default=True,
              help="Seconds a client has to send its whole request head.")
@click.option("--idle-timeout", type=float, default=30.0, show_default=True,
              help="Seconds a stalled client may keep a response waiting.")
@click.option("--max-clients", type=int, default=256, show_default=True, help="Open connections at most.")
@click.option("--verbose", is_flag=True, help="Log every request.")
@click.option("--mip-index", "mip_index", type=click.Path(file_okay=False, exists=True), default=None,
              help="Serve this mip index (`package mip-index`, development boards) instead of the repository.")
@click.pass_context
def serve_cmd(ctx, host, port, tls, cert, key, head_timeout, idle_timeout, max_clients, verbose, mip_index) -> None:
    """Serve metadata/ and targets/ as static files until interrupted.

    Regular files inside the repository only (no symbolic links, no listings),
    one thread, every client under a deadline. For a production setup behind a
    static web server see README "Serving the repository"."""
    from host_tools.release.selfsigned import ensure_self_signed
    from host_tools.release.serve import RepositoryServer, ServeLimits

    layout = Layout.of(workdir(ctx))
    if (cert or key) and not tls:
        raise click.UsageError("--cert/--key need --tls")
    if key and not cert:
        raise click.UsageError("--key needs --cert")
    if tls and not cert:
        cert, key = ensure_self_signed(layout.workdir / "tls", host)
        click.echo(f"TLS certificate (give it to clients as their CA): {cert}")
    limits = ServeLimits(head_timeout=head_timeout, idle_timeout=idle_timeout, max_clients=max_clients)
    served = Path(mip_index) if mip_index else layout.repository
    server = RepositoryServer(served, host, port, Path(cert) if cert else None,
                              Path(key) if key else None, quiet=not verbose, limits=limits)
    if mip_index:
        click.echo(f"serving the mip index {served} at {server.url}/  (mpremote mip install --index "
                   f"{server.url} medsentry-agent; unsigned: development boards only); Ctrl-C to stop")
    else:
        from host_tools.release.served import write_record

        # `device provision` in this work dir takes the update URL from here.
        write_record(layout.workdir, server.url, Path(cert) if tls and cert else None)
        click.echo(f"serving {layout.repository} at {server.url}/  (metadata: {server.url}/metadata/, "
                   f"targets: {server.url}/targets/); Ctrl-C to stop", )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        if not mip_index:
            from host_tools.release.served import remove_record

            remove_record(layout.workdir)


@cli.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def status_cmd(ctx, as_json: bool) -> None:
    """Versions and expiries of every role."""
    import json

    from host_tools.release.keys import EnvPassphrases
    from host_tools.release.session import open_session

    with open_session(workdir(ctx), EnvPassphrases(), lock=False) as s:
        repo = s.repo
        rows = []
        for role in ("root", "timestamp", "snapshot", "targets", *repo.models()):
            signed = repo.md(role).signed
            rows.append({"role": role, "version": signed.version, "expires": signed.expires.isoformat(),
                         "expired": bool(signed.is_expired(repo.now))})
            state = "EXPIRED" if rows[-1]["expired"] else "ok"
            if not as_json:
                click.echo(f"{role:<12} v{signed.version:<5} expires {signed.expires:%Y-%m-%d %H:%M} UTC  {state}")
    if as_json:
        click.echo(json.dumps(rows, indent=1))


@cli.command("recover")
@no_prompt_option
@click.pass_context
def recover_cmd(ctx, no_prompt) -> None:
    """Finish a change an interrupted command left, tidy and verify the repository.

    Any command does the first part on its own; this also removes stale temp
    files, repairs a rotation an older medsentry left half done (needs the
    online keys' passphrases), and moves key files no role trusts to keys/retired/."""
    from host_tools.cli.keys import passphrases
    from host_tools.release.recover import recover_workdir

    result = recover_workdir(workdir(ctx), passphrases(no_prompt))
    if result.finished:
        click.echo(f"finished the interrupted {result.finished}")
    else:
        click.echo("no interrupted change")
    if result.resigned:
        click.echo("repaired a half-done rotation: re-signed " + ", ".join(result.resigned)
                   + " with the keys the newest root trusts")
    for p in result.temps:
        click.echo(f"removed stale temp file {p}")
    for name in result.orphans:
        click.echo(f"moved untrusted key file {name} to keys/retired/")
    click.echo("repository verifies: " + ", ".join(f"{r} v{v}" for r, v in result.versions.items()))


@cli.command("expiry")
@click.argument("role", type=click.Choice(EXPIRY_ROLES))
@click.argument("duration")
@click.pass_context
def expiry_cmd(ctx, role, duration) -> None:
    """Set how long newly signed ROLE metadata stays valid (e.g. timestamp 12h).

    Applies from the next signing of that role."""
    layout = Layout.of(workdir(ctx))
    config = ReleaseConfig.load(layout.config)
    config.expiry[role] = duration
    config.save(layout.config)
    click.echo(f"{role} metadata will expire {duration} after signing")


@cli.command("slot-size")
@click.argument("model")
@click.argument("size", required=False)
@click.pass_context
def slot_size_cmd(ctx, model, size) -> None:
    """Show or set the application slot size of MODEL (e.g. 512k, 1M).

    It must match the board's partition table: `package build`, `package
    inspect` and `release publish` refuse a package whose files cannot fit it."""
    from host_tools.mpvm import parse_size
    from host_tools.release.package import check_model

    layout = Layout.of(workdir(ctx))
    config = ReleaseConfig.load(layout.config)
    check_model(model)
    if size is not None:
        try:
            config.slot_size[model] = parse_size(size)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="SIZE") from None
        config.save(layout.config)
    click.echo(f"{model}: application slot of {config.slot_bytes(model)} bytes")
