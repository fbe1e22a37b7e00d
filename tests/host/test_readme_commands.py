"""Every medsentry command the README shows parses as written.

The first-hour walkthrough is executed end to end (tests/e2e/test_readme_walkthrough.py);
the README's reference blocks (```sh and ```console) list many more commands
with placeholders (pump-1, /dev/pts/N, H:P1). Each of those lines is parsed by
the real click command tree, with every [optional part] written out: a renamed
command or option, a missing required argument or a stray argument fails here
with the README line that shows it. Values are not checked against the world
(a file the line names need not exist here)."""
from __future__ import annotations

import re
import shlex
import warnings
from pathlib import Path

import click
import pytest

from host_tools.cli.main import cli

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCK = re.compile(r"^```(sh|console)[^\n]*\n(.*?)^```", re.S | re.M)


def commands_in(line: str) -> list[list[str]]:
    """The simple commands of one shell line (split at ;, && and &), comments dropped."""
    lex = shlex.shlex(line, posix=True, punctuation_chars=";&")
    lex.whitespace_split = True
    commands: list[list[str]] = [[]]
    for token in lex:
        if token in (";", "&&", "&"):
            commands.append([])
        else:
            commands[-1].append(token)
    return [c for c in commands if c]


def readme_commands() -> list[tuple[int, list[str]]]:
    """(README line number, command) for every medsentry invocation in a shell block."""
    text = README.read_text()
    found = []
    for m in BLOCK.finditer(text):
        first = text.count("\n", 0, m.start(2)) + 1
        lines = m.group(2).split("\n")
        i = 0
        while i < len(lines):
            number, line = first + i, lines[i]
            while line.rstrip().endswith("\\") and i + 1 < len(lines):
                i += 1
                line = line.rstrip()[:-1] + " " + lines[i].strip()
            i += 1
            if m.group(1) == "console":
                if not line.startswith("$ "):
                    continue          # output shown under a command
                line = line[2:]
            for words in commands_in(line):
                while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):
                    words = words[1:]             # VAR=value medsentry ...
                if words and words[0] in (".venv/bin/medsentry", "medsentry"):
                    found.append((number, words[1:]))
    return found


def expand(words: list[str]) -> list[str]:
    """The command's words with every [optional part] written out and `...`
    (more options elided) dropped."""
    words = [w.lstrip("[").rstrip("]") for w in words]
    return [w for w in words if w and w != "..."]


def parse(words: list[str]) -> None:
    """Parse as the CLI would, down to the leaf command, without running it."""
    cmd: click.Command = cli
    ctx = cmd.make_context("medsentry", list(words), resilient_parsing=False)
    while isinstance(cmd, click.Group):
        with warnings.catch_warnings():   # click 8.2+: protected_args folds into args in click 9
            warnings.simplefilter("ignore", DeprecationWarning)
            rest = list(getattr(ctx, "protected_args", [])) + ctx.args
        if not rest:
            return
        name, cmd, rest = cmd.resolve_command(ctx, rest)
        ctx = cmd.make_context(name, rest, parent=ctx)


COMMANDS = readme_commands()


def test_the_readme_shows_commands():
    # the reference sections: sim, keys, package/release, repo, pki, broker,
    # collector, telemetry, fleet, rollout, assess, ops/command, console
    shown = {expand(w)[0] for _, w in COMMANDS if expand(w)}
    assert {"sim", "keys", "package", "release", "repo", "pki", "broker", "collector", "telemetry", "fleet",
            "rollout", "assess", "ops", "command", "console", "device"} <= shown, shown
    assert len(COMMANDS) > 60


PLACEHOLDER = re.compile(r"[A-Z][A-Z0-9_]*")   # H, P, NAME, URL: the reader fills them in


@pytest.mark.parametrize("line,words", COMMANDS, ids=[f"README:{n}" for n, _ in COMMANDS])
def test_readme_command_parses(line, words, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MEDSENTRY_WORKDIR", str(tmp_path))
    shown = "medsentry " + " ".join(words)
    try:
        parse(expand(words))
    except click.BadParameter as e:
        # a value the world decides (a file to read) or the reader fills in is not the README's fault
        if not isinstance(getattr(e.param, "type", None), (click.Path, click.File)) and not any(
                PLACEHOLDER.fullmatch(w) and f"'{w}'" in e.format_message() for w in expand(words)):
            pytest.fail(f"README line {line}: {shown}: {e.format_message()}")
    except click.UsageError as e:
        pytest.fail(f"README line {line}: {shown}: {e.format_message()}")


def test_the_checker_catches_a_wrong_line():
    """The parse above fails for the mistakes it is there to catch."""
    for wrong in ("sim strat pump-1", "sim start pump-1 --hep 256k", "fleet status extra",
                  "device provision pump-1 /dev/pts/5"):
        with pytest.raises(click.UsageError):
            parse(expand(wrong.split()))
