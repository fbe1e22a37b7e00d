# Network bring-up of the STM32 board: the F767's Ethernet MAC (RMII) and the
# Nucleo's LAN8742A PHY, as network.LAN of the stm32 port (lwIP underneath;
# DHCP starts when the interface goes up).
#
# The egress guard (board/netguard.py) is installed by the ROM after this and
# before any device code opens a socket. On this port it works at the name
# lookup (socket.getaddrinfo), as on the sim board; enforcing the allow-list
# below any address needs a hook in the port's lwIP glue (C), not written.
import time

import network

from board.hal import HALError

LINK_UP = 3  # LAN.status(): eth_link_status() == 3 is "up with an address"


class NetworkError(HALError):
    # The Ethernet link or its address did not come up in time.
    pass


def up(static=None, timeout_ms=15000):
    # static: [ip, mask, gateway, dns] from board.json, or None for DHCP.
    lan = network.LAN()
    lan.active(True)
    if static:
        # The stubs of network.LAN list only active(); ports/stm32/network_lan.c
        # also has isconnected(), status(), ifconfig() and ipconfig().
        lan.ifconfig(tuple(static))  # type: ignore[attr-defined]
    t0 = time.ticks_ms()
    while not lan.isconnected():  # type: ignore[attr-defined]
        if time.ticks_diff(time.ticks_ms(), t0) > timeout_ms:
            raise NetworkError("Ethernet: no link/address after %d ms (status %r)"
                               % (timeout_ms, lan.status()))  # type: ignore[attr-defined]
        time.sleep_ms(100)
    return lan


def address(lan):
    return lan.ifconfig()[0]  # type: ignore[attr-defined]
