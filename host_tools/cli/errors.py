"""Library errors become clean CLI errors (a message and exit 1, no traceback)."""
from __future__ import annotations

import click


class LibraryErrorGroup(click.Group):
    """A click group whose commands' library errors (`errors`) are reported
    as click.ClickException."""

    errors: tuple[type[BaseException], ...] = ()

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except self.errors as exc:
            raise click.ClickException(str(exc)) from None


def os_error_message(exc: OSError) -> str:
    """`cannot use PATH: reason` for a file-system error (no errno numbers)."""
    where = f" {exc.filename}" if exc.filename is not None else ""
    if exc.filename2 is not None:
        where += f" -> {exc.filename2}"
    return f"cannot use{where}: {exc.strerror or exc}"


class TopGroup(click.Group):
    """The `medsentry` group: a file-system error no command turned into a
    clear error of its own (a missing directory, a path under a file, a
    read-only place) ends as a one-line message and exit 1, never a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except OSError as exc:
            raise click.ClickException(os_error_message(exc) + no_workdir_hint(ctx)) from None
        except click.UsageError:
            raise
        except click.ClickException as exc:
            exc.message += no_workdir_hint(ctx)
            raise


def no_workdir_hint(ctx: click.Context) -> str:
    """When a command failed and its work dir does not exist: say so and how
    to point at one (a newcomer in the wrong directory sees "no fleet database")."""
    from pathlib import Path

    workdir = Path(ctx.params.get("workdir") or ".medsentry")
    if workdir.exists():
        return ""
    return (f"\n(no work dir at {workdir.resolve()}: run from the directory that holds it, "
            "or point at it with --workdir DIR or MEDSENTRY_WORKDIR=DIR)")
