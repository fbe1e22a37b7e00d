"""`medsentry package`: build, inspect and extract the SBOM of device packages."""
from __future__ import annotations

import json
from pathlib import Path

import click

from host_tools.cli.keys import ReleaseGroup, workdir
from host_tools.release.config import ReleaseConfig
from host_tools.release.errors import BuildError
from host_tools.release.layout import Layout


@click.group(cls=ReleaseGroup, name="package")
def cli() -> None:
    """Device software packages (format: host_tools/release/PACKAGE_FORMAT.md)."""


def _next_counter(wd: str, model: str) -> int:
    """Last security counter published for MODEL + 1 (1 without a repository)."""
    from host_tools.release.errors import NotInitialized
    from host_tools.release.keys import EnvPassphrases
    from host_tools.release.publish import last_published
    from host_tools.release.session import open_session

    try:
        with open_session(wd, EnvPassphrases(), lock=False) as s:
            if model not in s.repo.models():
                return 1
            _, top = last_published(s, model)
            return 1 if top is None else top.security_counter + 1
    except NotInitialized:
        return 1


@cli.command("build")
@click.option("--model", required=True, help="Device model, e.g. pump-v2.")
@click.option("--version", "version", required=True, help="MAJOR.MINOR.PATCH")
@click.option(
    "--security-counter",
    type=int,
    default=None,
    help="Anti-rollback counter (must rise with every release) [default: last published + 1].",
)
@click.option("--also-compatible", multiple=True, metavar="MODEL", help="More models this package fits.")
@click.option("--min-base-version", default="0.0.0", show_default=True, help="Oldest version it may be applied over.")
@click.option("--base", "base", default=None, help="Build a patch against this base package (a file, or a version in the work dir).")
@click.option(
    "--base-dir",
    type=click.Path(file_okay=False, exists=True),
    default=".",
    show_default=True,
    help="Paths inside the package are relative to this directory.",
)
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None, help="Package file to write [default: <workdir>/packages/MODEL-VERSION.mspk].")
@click.option("--keep-py", multiple=True, default=("boot.py", "main.py"), show_default=True, help="Package paths kept as .py source (MicroPython runs these as source).")
@click.option("--source-date-epoch", type=int, default=None, help="SBOM timestamp [default: $SOURCE_DATE_EPOCH, else 0].")
@click.argument("sources", nargs=-1, required=True, type=click.Path(exists=True))
@click.pass_context
def build_cmd(ctx, model, version, security_counter, also_compatible, min_base_version, base, base_dir,
              output, keep_py, source_date_epoch, sources) -> None:
    """Compile SOURCES (files or directories) with mpy-cross and write a package + CycloneDX SBOM."""
    from host_tools.release.build import build_package, default_package_name

    wd = workdir(ctx)
    layout = Layout.of(wd)
    if security_counter is None:
        security_counter = _next_counter(wd, model)
        click.echo(f"security counter: {security_counter} (last published + 1)")
    base_path = None
    if base:
        base_path = Path(base)
        if not base_path.is_file():
            for kind in ("full", "patch"):
                base_path = layout.packages / default_package_name(model, base, kind)
                if base_path.is_file():
                    break
            else:
                raise BuildError(f"base package not found: {base} (give a file, or a version built into {layout.packages})")
    result = build_package(
        model=model,
        version=version,
        sources=[Path(s) for s in sources],
        base_dir=Path(base_dir),
        security_counter=security_counter,
        out_dir=layout.packages,
        output=Path(output) if output else None,
        also_compatible=list(also_compatible),
        min_base_version=min_base_version,
        base_package=base_path,
        keep_py=tuple(keep_py),
        source_date_epoch=source_date_epoch,
        slot_bytes=ReleaseConfig.load(layout.config).slot_bytes(model),
    )
    m = result.manifest
    carried = sum(1 for f in m["files"] if f["stored"])
    click.echo(
        f"{result.path}: {m['kind']} package {model} {version}, {len(m['files'])} files "
        f"({carried} carried), {result.length} bytes, sha256 {result.sha256}"
    )
    click.echo(f"SBOM: {result.sbom_path}")


@cli.command("inspect")
@click.argument("package", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
@click.pass_context
def inspect_cmd(ctx, package, as_json) -> None:
    """Verify PACKAGE completely (its files must fit the model's slot) and show its manifest."""
    from host_tools.release.package import read_package

    info = read_package(Path(package), ReleaseConfig.load(Layout.of(workdir(ctx)).config).slot_bytes)
    if as_json:
        click.echo(json.dumps(info.manifest, indent=2, sort_keys=True))
        return
    m = info.manifest
    click.echo(f"{m['kind']} package {m['model']} {m['version']} (security counter {m['security_counter']})")
    click.echo(f"compatible: {', '.join(m['compatible_models'])}; min base version {m['min_base_version']}"
               + (f"; patch over {m['base_version']}" if m.get("base_version") else ""))
    for f in m["files"]:
        where = f"{f['csize']:>7} compressed" if f["stored"] else "   from base slot"
        click.echo(f"  {f['path']:<40} {f['size']:>8} {where}  {f['sha256'][:16]}…")
    click.echo("verified: every carried file matches its size and sha256")


@cli.command("sbom")
@click.argument("package", type=click.Path(dir_okay=False))
def sbom_cmd(package) -> None:
    """Print the CycloneDX SBOM embedded in PACKAGE."""
    from host_tools.release.package import read_package

    click.echo(read_package(Path(package)).sbom().decode(), nl=False)


@cli.command("mip-index")
@click.option("-o", "--out", "out", type=click.Path(file_okay=False), required=True,
              help="Directory to write the index into (serve it with `repo serve --mip-index DIR`).")
@click.option("--source-root", type=click.Path(file_okay=False, exists=True), default=None,
              help="Source tree with agent/, updater/, board/ manifest.py [default: this checkout].")
def mip_index_cmd(out, source_root) -> None:
    """Write a mip package index (micropython-lib layout) of the device packages.

    For development boards: `mpremote mip install --index URL medsentry-agent`.
    Nothing in it is signed: production devices take signed TUF packages only."""
    from host_tools.mpvm import REPO_ROOT
    from host_tools.release.mip_index import build_index

    pkgs = build_index(Path(source_root) if source_root else REPO_ROOT, Path(out))
    for p in pkgs:
        n = len(p.files["py"])
        click.echo(f"{p.name} {p.version}: {n} files ({', '.join(sorted(p.files))}); deps: {', '.join(p.deps) or '-'}")
    click.echo(f"index: {out}  (mpremote mip install --index URL --target DIR medsentry-agent)")
