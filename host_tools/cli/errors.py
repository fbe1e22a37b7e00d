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
