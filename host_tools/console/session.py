"""A maintenance-console session over a serial line (pyserial): log in with
password + TOTP code, run commands, log out. Nothing typed is logged here."""
from __future__ import annotations

import json
import re
import time
from typing import Callable

import serial

LOGIN = b"login: "
SHELL = b"@medsentry$ "
CONFIRM = b"type CLEAR to confirm: "
LOCKED_MARK = b"console locked"
TOKEN_PROMPT = b"unlock token: "
CHALLENGE_RE = re.compile(r"unlock-token (\S+) (\S+) ([0-9a-f]{32}) ")

# Exit codes of `medsentry console NAME --exec`.
EXIT_OK, EXIT_TRANSPORT, EXIT_LOGIN, EXIT_DENIED, EXIT_ERROR = 0, 1, 2, 3, 4


class ConsoleFailure(Exception):
    """A session step failed; ``code`` is the exit code for scripts."""

    def __init__(self, msg: str, code: int) -> None:
        super().__init__(msg)
        self.code = code


class Session:
    def __init__(self, port: str, timeout: float = 15.0) -> None:
        self.port = port
        self.timeout = timeout
        try:
            self.ser = serial.Serial(port, 115200, timeout=0.1)
        except (serial.SerialException, OSError) as e:
            raise ConsoleFailure(f"cannot open {port}: {e}", EXIT_TRANSPORT) from None
        self.user: str | None = None

    def close(self) -> None:
        self.ser.close()

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _until(self, *ends: bytes) -> bytes:
        deadline = time.monotonic() + self.timeout
        data = b""
        while time.monotonic() < deadline:
            chunk = self.ser.read(512)
            if chunk:
                data += chunk
                for e in ends:
                    if data.endswith(e):
                        return data
        raise ConsoleFailure(f"no console prompt on {self.port} within {self.timeout:.0f} s "
                             f"(got {data[-120:]!r}): is the board provisioned and running?", EXIT_TRANSPORT)

    def _send(self, line: str) -> None:
        self.ser.write(line.encode() + b"\r")
        self.ser.flush()

    def login(self, user: str, password: str, code: str | Callable[[], str],
              token: Callable[[str, str], str] | None = None) -> str:
        """Log in. `code`: the TOTP code (or a function asked only when the board
        wants one). `token`: called with the board's device id and the challenge
        when the board's clock is unset and it asks for a one-time unlock token."""
        self.ser.write(b"\x03")  # drop any half-typed line: a fresh login prompt
        self._until(LOGIN)
        self._send(user)
        self._until(b"password: ")
        self._send(password)
        asked = self._until(b"TOTP code: ", TOKEN_PROMPT)
        if asked.endswith(TOKEN_PROMPT):
            m = CHALLENGE_RE.search(_text(asked))
            if token is None or m is None:
                self.ser.write(b"\x03")
                lines = [x.strip() for x in _text(asked).splitlines()]
                said = next((x for x in lines if x.startswith("board clock unset")), "board clock unset")
                how = next((x for x in lines if x.startswith("medsentry console unlock-token")), "")
                raise ConsoleFailure(f"{said}\n  {how}\n(or pass --unlock-as OPERATOR)", EXIT_LOGIN)
            self._send(token(m.group(1), m.group(3)))
        else:
            self._send(code() if callable(code) else code)
        out = self._until(LOGIN, SHELL)
        text = _text(out)
        if out.endswith(LOGIN):
            raise ConsoleFailure(text.strip() or "login failed", EXIT_LOGIN)
        self.user = user
        return text

    def run(self, command: str, confirm: bool = False) -> str:
        self._send(command)
        out = self._until(SHELL, LOGIN, CONFIRM)
        if out.endswith(CONFIRM):
            self._send("CLEAR" if confirm else "no")
            out = self._until(SHELL)
        lines = _text(out).splitlines()
        body = "\n".join(lines[1:-1]).strip()  # minus the echoed command and the prompt
        if body.startswith("denied:"):
            raise ConsoleFailure(body, EXIT_DENIED)
        if body.startswith("error:") or body == "cancelled":
            raise ConsoleFailure(body, EXIT_ERROR)
        return body

    def logout(self) -> None:
        if self.user is not None:
            self._send("logout")
            self._until(LOGIN)
            self.user = None


def _text(data: bytes) -> str:
    return data.decode(errors="replace").replace("\r", "")


def parse(body: str) -> object:
    """A command's answer as JSON when it is JSON, else the text."""
    try:
        return json.loads(body)
    except ValueError:
        return body
