# Persistent device security flags (ROUND2 contract 2), /state/security.json:
#   quarantine            bool: network narrowed to broker + update server,
#                         console login disabled
#   console_unlock_until  board epoch seconds until which the console may be
#                         used despite quarantine (0 = none)
# Written atomically (temp + rename). A missing file is the default (no
# quarantine, console locked). A corrupt file fails closed for the unlock
# (0) and is reported as an integrity_violation event; quarantine then keeps
# its default False (a corrupt file must not lock operators out of a device
# they need to reach; the event raises the alarm).
#
# arm_egress(): the egress allow-list the flags switch (board/netguard.py),
# armed from the device configuration before the agent's first socket: the
# broker (identity host:port), the update server (config update.metadata_url
# / targets_url) and config "egress": {"allow": ["host:port", ...]} extras;
# quarantine narrows it to the broker and the update server.
import json

from board.compat import write_atomic

FILE = "security.json"
DEFAULT = {"quarantine": False, "console_unlock_until": 0}


def _path(state_dir):
    return state_dir + "/" + FILE


def _report(why):
    try:
        from agent.security import events
    except ImportError:
        return
    events.emit("integrity_violation", "warning", {"file": FILE, "reason": why})


def load(state_dir):
    out = {"quarantine": False, "console_unlock_until": 0}
    try:
        with open(_path(state_dir)) as f:
            text = f.read()
    except OSError:
        return out
    try:
        d = json.loads(text)
    except ValueError:
        _report("not JSON")
        return out
    if not isinstance(d, dict):
        _report("not an object")
        return out
    q = d.get("quarantine")
    u = d.get("console_unlock_until")
    if not isinstance(q, bool) or not isinstance(u, int) or isinstance(u, bool) or u < 0:
        _report("bad field types")
        return out
    out["quarantine"] = q
    out["console_unlock_until"] = u
    return out


def _save(state_dir, d):
    write_atomic(_path(state_dir), json.dumps(d))


def set_quarantine(state_dir, on):
    d = load(state_dir)
    d["quarantine"] = bool(on)
    _save(state_dir, d)
    return d


def set_console_unlock(state_dir, until):
    if not isinstance(until, int) or isinstance(until, bool) or until < 0:
        raise ValueError("console_unlock_until must be a non-negative int")
    d = load(state_dir)
    d["console_unlock_until"] = until
    _save(state_dir, d)
    return d


def console_allowed(state_dir, now):
    # Quarantine disables console login unless an unlock is running.
    d = load(state_dir)
    if not d["quarantine"]:
        return True
    return d["console_unlock_until"] > now


# -- the egress allow-list -------------------------------------------------

def _url_endpoint(url):
    # "https://host:port/path" -> "host:port" (default ports 80/443).
    if not isinstance(url, str) or "://" not in url:
        return None
    scheme, rest = url.split("://", 1)
    hostport = rest.split("/", 1)[0]
    if hostport.startswith("["):
        return None
    if ":" in hostport:
        return hostport
    return "%s:%d" % (hostport, 443 if scheme == "https" else 80)


def core_endpoints(ident, cfg):
    eps = []
    if ident is not None:
        eps.append("%s:%d" % (ident["host"], ident["port"]))
        for h, p in ident.get("endpoints") or ():  # every node of a broker cluster
            e = "%s:%d" % (h, p)
            if e not in eps:
                eps.append(e)
    up = cfg.get("update") or {}
    for k in ("metadata_url", "targets_url"):
        e = _url_endpoint(up.get(k))
        if e is not None and e not in eps:
            eps.append(e)
    return eps


def arm_egress(ident, cfg, state_dir, on_block=None):
    # on_block(endpoint): the guard's report of a blocked connection (the
    # agent's is commands_boot._egress_blocked, resident: this module is
    # released after arming).
    core = core_endpoints(ident, cfg)
    extra = []
    eg = cfg.get("egress")
    if isinstance(eg, dict) and isinstance(eg.get("allow"), list):
        extra = [e for e in eg["allow"] if isinstance(e, str)]
    from board import netguard

    netguard.arm(core + extra, on_block)
    if load(state_dir)["quarantine"]:
        netguard.narrow(core)
    return core
