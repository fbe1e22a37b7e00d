"""Simulated boards under a work directory: create, start, stop, list, reset,
power-cut, and script their pump. Each board lives in <workdir>/boards/NAME/:

  board.json    configuration (heap, flash size, unique id, firmware build)
  flash.img     the flash image (littlefs partitions), kept across restarts
  status.json   written by the supervisor: state, port, resets, device status
  console.log   everything the board printed on its UART
  io/           the board's "hardware" seen from the host (pump script, power-cut arm)
  fuses/otp.bin the one-time-programmable area OUTSIDE the flash image: console
                lock word and the device-unique key (board/sim/fuses.py); no
                reflash touches it
  ctl.sock      the supervisor's control socket while it runs

Everything under a board directory is its owner's only (files 0600, dirs 0700):
the fuse area holds the key that seals the device's secrets on flash.
"""
from __future__ import annotations

import json
import os
import random
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from board.sim import fuses as simfuses
from host_tools import mpvm
from host_tools.sim import build as simbuild
from host_tools.sim import image as simimage

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
DEFAULT_FLASH = "2M"
START_TIMEOUT = 15.0


class BoardError(RuntimeError):
    """A board operation cannot be done (unknown board, already running, halted...)."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _write_private(path: Path, text: str | bytes) -> None:
    """Write a board file readable by its owner only (0600), via temp + rename."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(text.encode() if isinstance(text, str) else text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def program_fuses(fuse_dir: Path) -> None:
    """The chip factory: an open lock word and a fresh random device-unique key.
    Done once per board; an existing fuse area is never rewritten."""
    otp = fuse_dir / simfuses.OTP_FILE
    if otp.exists():
        return
    fuse_dir.mkdir(mode=0o700, exist_ok=True)
    fuse_dir.chmod(0o700)
    data = bytearray(simfuses.OTP_SIZE)
    data[simfuses.KEY_OFFSET:simfuses.KEY_OFFSET + simfuses.KEY_SIZE] = secrets.token_bytes(simfuses.KEY_SIZE)
    _write_private(otp, bytes(data))


class Boards:
    def __init__(self, workdir: str | os.PathLike):
        self.workdir = Path(workdir).resolve()
        self.root = self.workdir / "boards"

    # -- lookup ----------------------------------------------------------------
    def board_dir(self, name: str) -> Path:
        if not NAME_RE.match(name):
            raise BoardError(f"invalid board name {name!r}: use 1-32 of a-z, 0-9, '-', '_'")
        return self.root / name

    def existing(self, name: str) -> Path:
        d = self.board_dir(name)
        if not (d / "board.json").exists():
            known = ", ".join(self.names()) or "none"
            raise BoardError(f"unknown board {name!r} (known boards: {known})")
        return d

    def names(self) -> list[str]:
        if not self.root.exists():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / "board.json").exists())

    def supervisor_pid(self, name: str) -> int | None:
        pidfile = self.board_dir(name) / "supervisor.pid"
        try:
            pid = int(pidfile.read_text())
        except (FileNotFoundError, ValueError):
            return None
        return pid if _pid_alive(pid) else None

    def is_running(self, name: str) -> bool:
        return self.supervisor_pid(name) is not None

    def status(self, name: str) -> dict:
        d = self.existing(name)
        cfg = json.loads((d / "board.json").read_text())
        try:
            st = json.loads((d / "status.json").read_text())
        except (FileNotFoundError, ValueError):
            st = {}
        if not self.is_running(name):
            st["state"] = "halted" if st.get("state") == "halted" else "stopped"
            st["port"] = None
            st["device"] = {}
        st.setdefault("name", name)
        st["heap"] = cfg["heap"]
        st["flash_size"] = cfg["flash_size"]
        return st

    # -- lifecycle ----------------------------------------------------------------
    def create(self, name: str, heap: str = mpvm.DEFAULT_HEAP, flash_size: str = DEFAULT_FLASH,
               model: str = simbuild.DEFAULT_MODEL) -> Path:
        d = self.board_dir(name)
        size = mpvm.parse_size(flash_size)
        mpvm.parse_size(heap)
        build = simbuild.build(self.workdir)
        for sub in (self.root, d, d / "io"):
            sub.mkdir(mode=0o700, parents=True, exist_ok=True)
            sub.chmod(0o700)
        simimage.new_board_image(d / "flash.img", size, build, model)
        (d / "flash.img").chmod(0o600)
        program_fuses(d / "fuses")
        cfg = {
            "name": name,
            "model": model,
            "heap": heap,
            "flash_size": size,
            "uid": secrets.token_hex(8),
            "firmware": str(build.firmware),
            "build": build.digest,
            "created": time.time(),
        }
        _write_private(d / "board.json", json.dumps(cfg, indent=1))
        return d

    def start(self, name: str, heap: str | None = None, flash_size: str | None = None,
              model: str | None = None, netns: str | None = None) -> dict:
        """Start a board (creating it on first use) and return its status with the port.

        ``netns``: run the supervisor and its VM inside that network namespace
        (``ip netns exec``), so the board's sockets are on that network; its pty
        and control socket are files, reachable from here as ever."""
        if netns is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", netns):
            raise BoardError(f"bad network namespace name {netns!r} (letters, digits, '_', '.', '-')")
        if netns is not None and not (Path("/run/netns") / netns).exists():
            raise BoardError(f"no network namespace {netns!r} (create it with `ip netns add {netns}`, as root)")
        d = self.board_dir(name)
        if (d / "board.json").exists():
            if self.is_running(name):
                st = self.status(name)
                raise BoardError(f"board {name!r} is already running on {st.get('port')}")
            cfg = json.loads((d / "board.json").read_text())
            if model is not None and model != cfg.get("model"):
                raise BoardError(f"board {name!r} is a {cfg.get('model')}; its model cannot change")
            if flash_size is not None and mpvm.parse_size(flash_size) != cfg["flash_size"]:
                raise BoardError(
                    f"board {name!r} has a {cfg['flash_size']}-byte flash; its size cannot change "
                    "(create a new board instead)"
                )
            # A damaged image is reported, never re-created behind the user's back.
            simimage.read_table(d / "flash.img")
            if heap is not None:
                mpvm.parse_size(heap)
                cfg["heap"] = heap
            # Firmware (the `board` package) follows the sources; flash keeps its contents.
            build = simbuild.build(self.workdir)
            cfg["firmware"] = str(build.firmware)
            _write_private(d / "board.json", json.dumps(cfg, indent=1))
        else:
            self.create(name, heap or mpvm.DEFAULT_HEAP, flash_size or DEFAULT_FLASH,
                        model or simbuild.DEFAULT_MODEL)
        for stale in ("status.json", "ctl.sock"):
            try:
                (d / stale).unlink()
            except FileNotFoundError:
                pass
        log = os.fdopen(os.open(d / "supervisor.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab")
        subprocess.Popen(
            (["ip", "netns", "exec", netns] if netns else []) + [sys.executable, "-m", "host_tools.sim.supervisor", str(d)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
            cwd=str(mpvm.REPO_ROOT),
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            try:
                st = json.loads((d / "status.json").read_text())
            except (FileNotFoundError, ValueError):
                time.sleep(0.05)
                continue
            dev = st.get("device") or {}
            if st.get("state") == "halted" or dev.get("state") == "halted":
                self._wait_stopped(name)
                raise BoardError(f"board {name!r} halted at boot: {dev.get('error') or st.get('error')}")
            if st.get("state") == "running" and st.get("port") and dev.get("state") in ("booted", "running"):
                return st
            time.sleep(0.05)
        raise BoardError(f"board {name!r} did not start within {START_TIMEOUT:.0f} s; see {d/'supervisor.log'}")

    def request(self, name: str, req: dict, timeout: float = 10.0) -> dict:
        d = self.existing(name)
        if not self.is_running(name):
            raise BoardError(f"board {name!r} is not running (start it with `medsentry sim start {name}`)")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(str(d / "ctl.sock"))
            s.sendall(json.dumps(req).encode() + b"\n")
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
        resp = json.loads(buf)
        if not resp.get("ok"):
            raise BoardError(resp.get("error", "request failed"))
        return resp

    def _wait_stopped(self, name: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.is_running(name) and time.monotonic() < deadline:
            time.sleep(0.05)

    def stop(self, name: str) -> None:
        self.existing(name)
        pid = self.supervisor_pid(name)
        if pid is None:
            raise BoardError(f"board {name!r} is not running")
        try:
            self.request(name, {"cmd": "stop"})
        except (OSError, BoardError):
            os.kill(pid, 15)
        self._wait_stopped(name)
        if self.is_running(name):
            os.kill(pid, 9)

    def reset(self, name: str) -> None:
        self.request(name, {"cmd": "reset"})

    def power_cut(self, name: str, at_write: int | None = None, seed: int | None = None,
                  max_writes: int = 200) -> int | None:
        """Cut power now, or arm a cut at the Nth flash write from now (N given,
        or drawn from `seed` in 1..max_writes). Returns the armed N."""
        if at_write is None and seed is not None:
            at_write = random.Random(seed).randint(1, max_writes)
        if at_write is not None and at_write < 1:
            raise BoardError("--at-write must be >= 1")
        self.request(name, {"cmd": "power_cut", "at_write": at_write})
        return at_write

    def wait_for(self, name: str, pred, timeout: float = 15.0, what: str = "condition") -> dict:
        """Poll the board's status until pred(status) is true."""
        deadline = time.monotonic() + timeout
        st: dict = {}
        while time.monotonic() < deadline:
            try:
                st = json.loads((self.existing(name) / "status.json").read_text())
            except (FileNotFoundError, ValueError):
                st = {}
            if st and pred(st):
                return st
            time.sleep(0.05)
        raise BoardError(f"board {name!r}: timed out waiting for {what}; last status: {st}")

    # -- the pump ----------------------------------------------------------------------
    def set_pump(self, name: str, script: dict) -> None:
        d = self.existing(name) / "io"
        d.mkdir(exist_ok=True)
        tmp = d / "pump.json.tmp"
        tmp.write_text(json.dumps(script))
        os.replace(tmp, d / "pump.json")

    def start_infusion(self, name: str, rate_ml_h: float, vtbi_ml: float) -> None:
        if rate_ml_h <= 0 or vtbi_ml <= 0:
            raise BoardError("rate and volume to be infused must be positive")
        self.set_pump(name, {"state": "infusing", "rate": rate_ml_h, "vtbi": vtbi_ml,
                             "started": time.time(), "alarms": []})

    def remove(self, name: str, force: bool = False) -> None:
        """Delete board ``name``'s directory (flash image, fuses, logs). A running
        board is refused unless ``force``, which stops it first."""
        d = self.existing(name)
        if self.is_running(name):
            if not force:
                raise BoardError(f"board {name!r} is running: stop it first (`sim stop {name}`) or use --force")
            self.stop(name)
        shutil.rmtree(d)

    def stop_infusion(self, name: str) -> None:
        self.set_pump(name, {"state": "idle", "rate": 0, "vtbi": 0, "alarms": []})

    def set_alarm(self, name: str, alarms: list[str]) -> None:
        path = self.existing(name) / "io" / "pump.json"
        try:
            script = json.loads(path.read_text())
        except (FileNotFoundError, ValueError):
            script = {"state": "idle", "rate": 0, "vtbi": 0}
        script["alarms"] = alarms
        self.set_pump(name, script)
