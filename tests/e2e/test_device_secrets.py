"""Secrets at rest and what a board inherits (issue 10 items 1 and 3, device side):
a flash dump of a provisioned board holds neither its TLS private key nor its
telemetry key (they are sealed under the device key, which lives outside the
image); board files are the owner's only; the operator's release passphrases
never reach device code; and the console lock lives in the fuse area, so
wiping or reflashing the whole flash image does not open the console."""
from __future__ import annotations

import json
import os
import stat

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.ciphers.aead import AESCCM

from agent import keystore
from host_tools.pki import FleetPKI
from host_tools.provision import BrokerAddress, provision
from host_tools.sim import build as simbuild
from host_tools.sim import image as simimage
from host_tools.sim.uart import RemoteError, Uart, UartError
from tests.e2e.sim_fixtures import sim_boards

NAME = "pump-s1"
PASSPHRASE_VAR = "MEDSENTRY_KEY_PASSPHRASE_ROOT_1"


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    work = tmp_path_factory.mktemp("secrets") / "work"
    pki = FleetPKI(work)
    pki.init()
    pki.issue(NAME, "pump-v2")
    with sim_boards(work) as boards:
        port = boards.start(NAME, model="pump-v2")["port"]
        provision(pki, NAME, port, BrokerAddress("127.0.0.1", 18883))
        boards.wait_for(NAME, lambda s: ((s.get("device") or {}).get("telemetry") or {}).get("sampled", 0) >= 1
                        and s["device"].get("device_id") == NAME, 20, "the provisioned agent sampling")
        yield pki, boards, work


def _secrets(pki: FleetPKI) -> dict[str, bytes]:
    key = serialization.load_pem_private_key(pki.device_identity(NAME).key.read_bytes(), None)
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption())
    scalar = key.private_numbers().private_value.to_bytes(32, "big")
    tel = pki.device(NAME).active_key().key
    return {"tls key DER": der, "tls key scalar": scalar, "telemetry key": tel}


def test_flash_dump_reveals_no_key(board):
    pki, boards, _ = board
    image = (boards.board_dir(NAME) / "flash.img").read_bytes()
    otp = (boards.board_dir(NAME) / "fuses" / "otp.bin").read_bytes()
    device_key = otp[16:32]
    found = {}
    for what, secret in dict(_secrets(pki), **{"device key": device_key}).items():
        for form, needle in (("raw", secret), ("hex", secret.hex().encode()), ("HEX", secret.hex().upper().encode())):
            if needle in image:
                found[what] = form
    assert found == {}, f"in the flash image in the clear: {found}"
    # ... while the identity is on flash and works: the agent runs as the device
    assert b"MSS1" in image and boards.status(NAME)["device"]["device_id"] == NAME


def test_sealing_matches_an_independent_aes_ccm():
    # agent/keystore.py (the device code, here on CPython) against cryptography's AESCCM.
    dk, nonce, secret = os.urandom(16), os.urandom(13), os.urandom(121)
    blob = keystore.seal(dk, "tls-key", secret, nonce=nonce)
    assert blob == b"MSS1" + nonce + AESCCM(dk, tag_length=16).encrypt(nonce, secret, b"medsentry-seal:tls-key")


def test_board_files_are_the_owners_only(board):
    _, boards, _ = board
    root = boards.board_dir(NAME)
    bad = []
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            if stat.S_IMODE(os.stat(os.path.join(dirpath, d)).st_mode) != 0o700:
                bad.append(os.path.join(dirpath, d))
        for f in filenames:
            st = os.lstat(os.path.join(dirpath, f))
            if stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) != 0o600:
                bad.append(f"{os.path.join(dirpath, f)} {oct(stat.S_IMODE(st.st_mode))}")
    assert stat.S_IMODE(os.stat(root).st_mode) == 0o700
    assert bad == []
    assert (root / "fuses" / "otp.bin").exists() and (root / "flash.img").exists()


def test_operator_passphrases_do_not_reach_device_code(tmp_path, monkeypatch):
    monkeypatch.setenv(PASSPHRASE_VAR, "operator-secret-passphrase")
    monkeypatch.setenv("MEDSENTRY_KEY_PASSPHRASE_TIMESTAMP", "operator-secret-passphrase")
    with sim_boards(tmp_path / "work") as boards:
        st = boards.start("env-1")  # factory board: its REPL runs code
        with Uart(st["port"]) as u:
            out = u.exec(f"import os\nprint(repr(os.getenv({PASSPHRASE_VAR!r})), "
                         "repr(os.getenv('MEDSENTRY_KEY_PASSPHRASE_TIMESTAMP')))")
        assert out.strip() == "None None"
        vm = boards.status("env-1")["vm_pid"]
        environ = open(f"/proc/{vm}/environ", "rb").read()
        assert b"operator-secret-passphrase" not in environ and b"MEDSENTRY_KEY_PASSPHRASE" not in environ
        names = sorted(e.split(b"=", 1)[0].decode() for e in environ.split(b"\0") if e)
        assert set(names) <= {"PATH", "LANG", "LC_ALL", "TZ", "LD_PRELOAD", "MICROPYPATH"} | {
            n for n in names if n.startswith(("MEDSENTRY_", "FAKETIME"))} and not any(
            n.startswith("MEDSENTRY_KEY") for n in names), names


def test_reflashing_everything_keeps_the_console_locked(board):
    # The lock is not a file the application (or anyone with the flash) can
    # delete or rename: format every partition and reinstall the firmware.
    _, boards, work = board
    boards.stop(NAME)
    img = boards.board_dir(NAME) / "flash.img"
    build = simbuild.build(work)
    simimage.factory_program(img, build, install={"loader": build.loader, "slot_a": build.app_for("pump-v2")},
                             files={"state/boot.json": json.dumps({"active": "a", "floor": 0, "trial": None,
                                                                    "events": []})})
    st = boards.start(NAME)
    dev = boards.wait_for(NAME, lambda s: (s.get("device") or {}).get("state") == "running", 20, "agent")["device"]
    assert dev.get("device_id") != NAME  # the wiped flash holds no identity
    assert (boards.board_dir(NAME) / "fuses" / "otp.bin").read_bytes()[0] != 0
    with pytest.raises((UartError, RemoteError)):
        with Uart(st["port"], timeout=3) as u:
            u.exec("print('opened')")
    assert b"opened" not in (boards.board_dir(NAME) / "console.log").read_bytes()
    assert boards.status(NAME)["device"]["state"] == "running"
