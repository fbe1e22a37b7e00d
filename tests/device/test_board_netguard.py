# The board's network guard (board/netguard.py): once armed, only the
# allow-listed endpoints are reachable; anything else raises EgressBlocked,
# is counted and reported as an egress_blocked event; quarantine narrows the
# list. The guarded socket module (what the board ROM installs) also refuses
# a connect() to an address no allowed getaddrinfo returned.
import sys

import devtest
from agent.security import events
from board import netguard


def _listener():
    # (socket, port) listening on loopback. MicroPython's socket has no
    # getsockname: try random high ports until one binds.
    import os
    import socket

    for _ in range(50):
        port = 20000 + int.from_bytes(os.urandom(2), "big") % 30000
        s = socket.socket()
        try:
            s.bind(socket.getaddrinfo("127.0.0.1", port)[0][-1])
            s.listen(4)
            return s, port
        except OSError:
            s.close()
    raise AssertionError("no free port")


def test_check_allows_listed_blocks_others_and_counts():
    devtest.reset_netguard()
    seen = []
    events.set_sink(lambda k, s, d: None)
    events.set_sink(lambda k, s, d: seen.append((k, d)))
    netguard.check("evil.example", 443)  # not armed: no restriction
    netguard.arm(["broker:8883", "updates:443", "ntp:123"],
                 lambda ep: events.emit("egress_blocked", "warning", {"endpoint": ep}))
    netguard.check("broker", 8883)
    netguard.account("broker", 8883, 100, 20)
    e = devtest.raises(netguard.EgressBlocked, netguard.check, "evil.example", 443)
    assert isinstance(e, OSError)
    assert seen == [("egress_blocked", {"endpoint": "evil.example:443"})], seen
    netguard.narrow(["broker:8883", "updates:443"])  # quarantine
    devtest.raises(netguard.EgressBlocked, netguard.check, "ntp", 123)
    netguard.check("updates", 443)
    netguard.narrow(None)
    netguard.check("ntp", 123)
    st = netguard.stats()
    assert st["blocked"] == 2, st
    assert st["endpoints"]["broker:8883"] == {"bytes_in": 100, "bytes_out": 20, "connections": 1}, st
    assert st["endpoints"]["evil.example:443"]["connections"] == 1, st  # the one before arming
    events.set_sink(None)
    devtest.reset_netguard()


def test_guarded_socket_module_blocks_a_lookup_anywhere_else():
    devtest.reset_netguard()
    import socket as real

    was = sys.modules.get("socket")
    srv, port = _listener()
    other, oport = _listener()
    try:
        guarded = netguard.install()
        netguard.arm(["127.0.0.1:%d" % port])
        # What device code (or a patch) does after the ROM installed the guard:
        import socket

        assert socket is guarded
        ai = socket.getaddrinfo("127.0.0.1", port)[0]
        c = socket.socket()
        c.connect(ai[-1])
        c.close()
        # Another port on the same host: refused at the lookup.
        devtest.raises(netguard.EgressBlocked, socket.getaddrinfo, "127.0.0.1", oport)
        st = netguard.stats()
        assert st["blocked"] == 1, st
        assert st["endpoints"]["127.0.0.1:%d" % port]["connections"] == 1, st
        assert "127.0.0.1:%d" % oport not in st["endpoints"], st
        assert socket.SOCK_STREAM == real.SOCK_STREAM
    finally:
        if was is None:
            del sys.modules["socket"]
        else:
            sys.modules["socket"] = was
        srv.close()
        other.close()
        devtest.reset_netguard()
