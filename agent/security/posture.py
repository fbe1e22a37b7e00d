# The fields of a posture report (issue 12 section 1), gathered from the
# board, the agent and the optional modules other parts of the agent own.
# Field choices against AWS Device Defender / the Defender micro agent:
# host_tools/collector/SEALING.md section 8.
import binascii
import gc
import hashlib
import os

MAX_ENDPOINTS = 4


def _days_from_civil(y, m, d):
    # Days since 1970-01-01 of a Gregorian date (H. Hinnant's algorithm).
    if m <= 2:
        y -= 1
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _der(buf, i):
    # -> (tag, content start, content end) of the DER element at i
    tag = buf[i]
    ln = buf[i + 1]
    i += 2
    if ln & 0x80:
        k = ln & 0x7F
        ln = int.from_bytes(bytes(buf[i:i + k]), "big")
        i += k
    return tag, i, i + ln


def cert_not_after(der):
    # notAfter of an X.509 certificate (DER) as Unix seconds, or None.
    try:
        _, s, _ = _der(der, 0)  # Certificate
        _, i, _ = _der(der, s)  # tbsCertificate
        tag, a, b = _der(der, i)
        if tag == 0xA0:  # [0] version
            i = b
            tag, a, b = _der(der, i)
        # (a, b) is the serial; skip the signature algorithm and the issuer
        for _ in range(3):
            tag, a, b = _der(der, b)
        # (a, b) is now the validity sequence
        _, a, b = _der(der, a)  # notBefore
        tag, a, b = _der(der, b)  # notAfter
        txt = bytes(der[a:b]).decode()
        if tag == 0x17:  # UTCTime YYMMDDHHMMSSZ
            y = int(txt[0:2])
            y += 2000 if y < 50 else 1900
            txt = txt[2:]
        else:  # GeneralizedTime YYYYMMDDHHMMSSZ
            y = int(txt[0:4])
            txt = txt[4:]
        days = _days_from_civil(y, int(txt[0:2]), int(txt[2:4]))
        return days * 86400 + int(txt[4:6]) * 3600 + int(txt[6:8]) * 60 + int(txt[8:10])
    except (IndexError, ValueError, TypeError, UnicodeError):
        return None


def file_digest(path):
    # First 8 bytes of the sha256 of a file, hex; None when absent.
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while True:
                b = f.read(512)
                if not b:
                    break
                h.update(b)
    except OSError:
        return None
    return binascii.hexlify(h.digest()[:8]).decode()


def flash_free(path):
    try:
        st = os.statvfs(path)
        return st[0] * st[4]
    except (OSError, AttributeError):
        return None


def heap_free():
    return gc.mem_free() if hasattr(gc, "mem_free") else None


def egress():
    # {"host:port": [in, out, connections]} (at most MAX_ENDPOINTS, the busiest)
    # and the blocked count, from the network guard when the board has one.
    try:
        from board import netguard
    except ImportError:
        return None, None
    try:
        st = netguard.stats()
        eps = st.get("endpoints") or {}
        names = sorted(eps, key=lambda k: -(eps[k].get("bytes_in", 0) + eps[k].get("bytes_out", 0)))
        out = {}
        for k in names[:MAX_ENDPOINTS]:
            e = eps[k]
            out[k[:48]] = [e.get("bytes_in", 0), e.get("bytes_out", 0), e.get("connections", 0)]
        return out, st.get("blocked", 0)
    except (AttributeError, TypeError, ValueError, OSError):
        return None, None


def console(state_dir):
    # Failed console logins and lockout state, when the console module is there.
    try:
        from agent.console import stats as cstats
    except ImportError:
        return None
    try:
        s = cstats.stats(state_dir)
        return {"failed": s.get("failed_logins", 0), "lockouts": s.get("lockouts", 0),
                "locked": len(s.get("locked_accounts") or [])}
    except (AttributeError, TypeError, ValueError, OSError):
        return None


def stable_key(p):
    # The fields whose change triggers a posture report at once.
    i = p.get("integrity") or {}
    c = p.get("console") or {}
    return (p.get("version"), p.get("slot"), i.get("ok"), tuple(i.get("bad") or ()), p.get("config"),
            p.get("cert_exp"), str(p.get("tuf")), p.get("blocked"), c.get("lockouts"), c.get("locked"))
