# The network guard of the board HAL: every socket the agent (and anything
# the device runs) opens goes through here. Once armed with the endpoints of
# the device's configuration (broker, update server, listed extras), only
# those are reachable; anything else raises EgressBlocked (an OSError, so
# callers handle it as a network failure), is counted and handed to the
# on_block callback the agent gives arm() (an `egress_blocked` security event). Quarantine narrows the allow-list to the
# broker and the update server.
#
# Enforcement on the board: install() puts a guarded `socket` module in
# sys.modules before any device code imports socket (the ROM does it, see
# board/sim/rom_main.py), so asyncio's open_connection, the updater's fetcher
# and any code a patch brings resolve endpoints through a guarded
# getaddrinfo. The agent's transports also call check() explicitly, which is
# all there is on CPython (host tests), where install() is not used.
# Limit on the sim board: a hand-built binary socket address skips the name
# lookup; there the socket type cannot be wrapped (MicroPython's TLS only
# wraps native sockets). A hardware port puts the same allow-list in its
# network driver (lwIP netconn / ESP-IDF socket hooks), below any address.
#
# Not armed (a factory board before the agent starts, host tools): no
# restriction. The agent arms the guard before its first socket.
import sys

MAX_ENDPOINTS = 16


class EgressBlocked(OSError):
    # A connection to an endpoint outside the allow-list was refused.
    pass


_state = {"armed": False, "base": [], "narrow": None, "blocked": 0, "on_block": None, "installed": False}
# "host:port" -> {"bytes_in", "bytes_out", "connections"}
_endpoints = {}


def _ep(host, port):
    return "%s:%d" % (host, int(port))


def arm(endpoints, on_block=None):
    # endpoints: ["host:port", ...] allowed from now on.
    base = []
    for e in endpoints[:MAX_ENDPOINTS]:
        if isinstance(e, str) and ":" in e and e not in base:
            base.append(e)
    _state["base"] = base
    _state["armed"] = True
    _state["on_block"] = on_block


def narrow(endpoints):
    # Quarantine: only these (a subset of the armed list) stay allowed;
    # None lifts the narrowing.
    if endpoints is None:
        _state["narrow"] = None
    else:
        _state["narrow"] = [e for e in endpoints if e in _state["base"]]


def allowed():
    n = _state["narrow"]
    return list(_state["base"] if n is None else n)


def is_allowed(host, port):
    if not _state["armed"]:
        return True
    return _ep(host, port) in allowed()


def _block(what):
    # on_block (given by the agent at arm()) reports it as a security event:
    # the HAL never imports the agent.
    _state["blocked"] += 1
    cb = _state["on_block"]
    if cb is not None:
        cb(what)
    raise EgressBlocked("egress to %s is not allowed" % what)


def check(host, port):
    # Called before connecting to host:port; counts the connection.
    ep = _ep(host, port)
    if _state["armed"] and ep not in allowed():
        _block(ep)
    if not _state["installed"]:
        # With the guarded socket module installed, its connect() counts.
        _count(ep, "connections", 1)


def _count(ep, field, n):
    e = _endpoints.get(ep)
    if e is None:
        if len(_endpoints) >= MAX_ENDPOINTS:
            return
        e = {"bytes_in": 0, "bytes_out": 0, "connections": 0}
        _endpoints[ep] = e
    e[field] += n


def account(host, port, bytes_in=0, bytes_out=0):
    ep = _ep(host, port)
    if bytes_in:
        _count(ep, "bytes_in", bytes_in)
    if bytes_out:
        _count(ep, "bytes_out", bytes_out)


def stats():
    eps = {}
    for k in _endpoints:
        e = _endpoints[k]
        eps[k] = {"bytes_in": e["bytes_in"], "bytes_out": e["bytes_out"], "connections": e["connections"]}
    return {"endpoints": eps, "blocked": _state["blocked"]}


# -- the guarded socket module (installed on the board) ----------------------

def _make_module(real):
    # getaddrinfo is the gate: every connection of the device's code starts
    # with a name lookup (asyncio's open_connection, the fetcher, urequests).
    # The socket type itself stays the native one: MicroPython's TLS layer
    # only wraps native sockets (a Python subclass breaks ssl.wrap_socket).
    class Module:
        def __getattr__(self, name):
            return getattr(real, name)

        def getaddrinfo(self, host, port, *args):
            ep = _ep(host, port)
            if _state["armed"] and ep not in allowed():
                _block(ep)
            _count(ep, "connections", 1)
            return real.getaddrinfo(host, port, *args)

    return Module()


def install():
    # Replace `socket` for everything imported after this call (MicroPython
    # board ROM). Idempotent.
    cur = sys.modules.get("socket")
    if cur is not None and getattr(cur, "_netguard", False):
        return cur
    import socket as real

    mod = _make_module(real)
    try:
        mod._netguard = True
    except AttributeError:
        pass
    sys.modules["socket"] = mod
    _state["installed"] = True
    return mod
