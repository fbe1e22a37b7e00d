"""Drive the real 802.1X supplicant test tool (Debian ``eapoltest``: ``eapol_test``).

``admit(...)`` runs one EAP-TLS exchange with a device's certificate and key
against a RADIUS server and returns what the switch would learn: accepted or
not, and the VLAN from the tunnel attributes (RFC 3580).
"""
from __future__ import annotations

import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from host_tools.deps import require_program

# eapol_test prints each reply attribute as hex; Tunnel-Private-Group-Id is
# attribute 81 with a tag byte (00) first, then the VLAN id as ASCII.
_ATTR81 = re.compile(r"Attribute 81 \(Tunnel-Private-Group-Id\) length=\d+\s+Value: ([0-9a-f]+)")
_ATTR64 = re.compile(r"Attribute 64 \(Tunnel-Type\) length=\d+\s+Value: ([0-9a-f]+)")


@dataclass(frozen=True)
class Admission:
    accepted: bool
    vlan: int | None
    tunnel_type: int | None
    output: str


def _parse(out: str, rc: int) -> Admission:
    accepted = rc == 0 and "SUCCESS" in out and "Access-Accept" in out
    vlan = tunnel_type = None
    m = _ATTR81.findall(out)
    if m:
        raw = bytes.fromhex(m[-1])
        text = raw[1:] if raw and raw[0] < 0x20 else raw  # tag byte
        vlan = int(text.decode())
    t = _ATTR64.findall(out)
    if t:
        tunnel_type = int(t[-1], 16) & 0xFFFFFF
    return Admission(accepted, vlan if accepted else None, tunnel_type if accepted else None, out)


def admit(host: str, port: int, secret: str, identity: str, *, ca: Path,
          cert: Path | None, key: Path | None, timeout: int = 5) -> Admission:
    """One EAP-TLS admission as ``identity``; ``cert=None`` offers no certificate."""
    exe = require_program("eapol_test")
    lines = ["network={", "\tkey_mgmt=IEEE8021X", "\teap=TLS", f'\tidentity="{identity}"',
             f'\tca_cert="{ca}"', "\teapol_flags=0"]
    if cert is not None and key is not None:
        lines += [f'\tclient_cert="{cert}"', f'\tprivate_key="{key}"']
    lines.append("}")
    with tempfile.TemporaryDirectory(prefix="medsentry-eapol-") as tmp:
        conf = Path(tmp) / "eapol.conf"
        conf.write_text("\n".join(lines) + "\n")
        try:
            proc = subprocess.run([exe, "-c", str(conf), "-a", host, "-p", str(port), "-s", secret,
                                   "-t", str(timeout), "-r", "0"],
                                  capture_output=True, text=True, timeout=timeout + 10)
        except subprocess.TimeoutExpired as exc:
            return Admission(False, None, None, f"eapol_test timed out: {exc}")
    return _parse(proc.stdout + proc.stderr, proc.returncode)
