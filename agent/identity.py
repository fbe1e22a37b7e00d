# The device identity written at factory provisioning
# (`medsentry device provision`, host_tools/provision):
#
#   /state/identity.json
#     {"version": 2,
#      "device_id": "pump-1", "model": "pump-v2",
#      "broker": {"host": "127.0.0.1", "port": 8883, "server_hostname": "127.0.0.1",
#                 "endpoints": [["127.0.0.1", 8883], ...]},   (optional: a broker cluster's nodes)
#      "telemetry": {"kid": hex (8 bytes), "base_iv": hex (13),
#                    "sealed_key": hex (the 16-byte AES key, sealed as "telemetry-key")},
#      "files": {"cert": "identity/cert.der", "key": "identity/key.sealed",
#                "ca": "identity/ca.der"},          (relative to /state)
#      "pump": true}                                (sample the pump too)
#   /state/identity/cert.der, ca.der   device certificate, fleet CA (public)
#   /state/identity/key.sealed         private key (SEC1 DER) sealed as "tls-key"
# Secrets are sealed under the board's device key (agent/keystore.py); the
# unsealed format 1 (keys in the clear) is refused.
#
# Provisioning commits by programming the board's console lock fuse: an
# identity on a board whose lock state is "open" is an unfinished
# provisioning and is never used (the ROM removes it at boot).
#
# load() returns None when the device was never provisioned (the agent then
# runs without telemetry, as an unprovisioned factory board does) and raises
# IdentityError when the file is there but unusable: a provisioned device
# must say so loudly rather than silently stop sending telemetry.
import json
import binascii

IDENTITY = "identity.json"
FORMAT_VERSION = 2
SEALED_TLS_KEY = "tls-key"
SEALED_TELEMETRY_KEY = "telemetry-key"
SEALED_TELEMETRY_LEN = 4 + 13 + 16 + 16  # agent/keystore.py: magic, nonce, 16-byte key, tag
MAX_DER = 4096  # a P-256 certificate is ~600 bytes; anything bigger is wrong


class IdentityError(ValueError):
    pass


def _hex(d, name, size):
    v = d.get(name)
    try:
        b = binascii.unhexlify(v)
    except (TypeError, ValueError):
        raise IdentityError("telemetry %s is not hex" % name)
    if len(b) != size:
        raise IdentityError("telemetry %s must be %d bytes" % (name, size))
    return b


def _read(state_dir, rel, name):
    if not isinstance(rel, str) or not rel or rel.startswith("/") or ".." in rel:
        raise IdentityError("bad file name for %s" % name)
    try:
        with open(state_dir + "/" + rel, "rb") as f:
            data = f.read(MAX_DER + 1)
    except OSError:
        raise IdentityError("%s file %s missing" % (name, rel))
    if not data or len(data) > MAX_DER:
        raise IdentityError("%s file %s is empty or too large" % (name, rel))
    return data


def _read_der(state_dir, rel, name):
    data = _read(state_dir, rel, name)
    if data[0] != 0x30:
        raise IdentityError("%s file %s is not DER" % (name, rel))
    return data


def _unseal(device_key, name, blob):
    # Imported here: an unprovisioned board never loads the cipher code (heap).
    from agent import keystore

    try:
        return keystore.unseal(device_key, name, blob)
    except keystore.SealError as e:
        raise IdentityError(str(e))


def load(state_dir, board):
    try:
        with open(state_dir + "/" + IDENTITY) as f:
            text = f.read(8192)
    except OSError:
        return None
    if board.lock_state() == "open":
        # Not committed (the lock fuse is the commit): not an identity.
        return None
    try:
        d = json.loads(text)
    except ValueError:
        raise IdentityError("identity.json is not valid JSON")
    if isinstance(d, dict) and d.get("version") == 1:
        raise IdentityError("identity.json holds unsealed keys (format 1): refused, provision the board again")
    if not isinstance(d, dict) or d.get("version") != FORMAT_VERSION:
        raise IdentityError("identity.json has an unknown format")
    dev = d.get("device_id")
    if not isinstance(dev, str) or not 1 <= len(dev) <= 64:
        raise IdentityError("identity.json: bad device_id")
    broker = d.get("broker")
    if not isinstance(broker, dict):
        raise IdentityError("identity.json: no broker")
    host = broker.get("host")
    port = broker.get("port")
    if not isinstance(host, str) or not host or not isinstance(port, int) or not 0 < port < 65536:
        raise IdentityError("identity.json: bad broker address")
    endpoints = _endpoints(broker.get("endpoints"), host, port)
    tel = d.get("telemetry")
    if not isinstance(tel, dict):
        raise IdentityError("identity.json: no telemetry key")
    files = d.get("files")
    if not isinstance(files, dict):
        raise IdentityError("identity.json: no files")
    try:
        dk = board.device_key()
    except OSError as e:
        raise IdentityError("no device key to unseal the identity: %s" % e)
    key_der = _unseal(dk, SEALED_TLS_KEY, _read(state_dir, files.get("key"), "key"))
    if key_der[:1] != b"\x30":
        raise IdentityError("unsealed key is not DER")
    tel_key = _unseal(dk, SEALED_TELEMETRY_KEY, _hex(tel, "sealed_key", SEALED_TELEMETRY_LEN))
    if len(tel_key) != 16:
        raise IdentityError("telemetry key must be 16 bytes")
    return {
        "device_id": dev,
        "model": d.get("model"),
        "host": host,
        "port": port,
        "server_hostname": broker.get("server_hostname") or host,
        "kid": _hex(tel, "kid", 8),
        "key": tel_key,
        "base_iv": _hex(tel, "base_iv", 13),
        "cert_der": _read_der(state_dir, files.get("cert"), "cert"),
        "key_der": key_der,
        "ca_der": _read_der(state_dir, files.get("ca"), "ca"),
        "pump": bool(d.get("pump", True)),
        "endpoints": endpoints,
    }


MAX_ENDPOINTS = 8


def _endpoints(value, host, port):
    # broker.endpoints: the nodes of a broker cluster, [[host, port], ...], the
    # first being host/port; None for a single broker. The supervisor moves
    # to the next node when one fails; the egress guard allows them all.
    if value is None:
        return None
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_ENDPOINTS:
        raise IdentityError("identity.json: broker.endpoints must be a list of 1..%d [host, port]" % MAX_ENDPOINTS)
    out = []
    for e in value:
        if (not isinstance(e, list) or len(e) != 2 or not isinstance(e[0], str) or not e[0]
                or not isinstance(e[1], int) or isinstance(e[1], bool) or not 0 < e[1] < 65536):
            raise IdentityError("identity.json: bad broker endpoint %r" % (e,))
        out.append((e[0], e[1]))
    if out[0] != (host, port):
        raise IdentityError("identity.json: broker.endpoints must start with broker host/port")
    return out
