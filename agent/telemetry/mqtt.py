# MQTT 3.1.1 for the device: asyncio, mutual TLS, QoS 0/1 both ways.
#
# Why our own and not micropython-lib's umqtt.simple/robust: umqtt is not
# frozen into this VM (and `mip` cannot reach its index here); it is blocking
# (a slow broker would stall sampling), keeps no table of in-flight QoS 1
# messages (so no retransmission with DUP after a reconnect), and its packet
# reader trusts the remaining length it reads. This client is written in the
# style of mqtt_as (asyncio, recovery above the protocol) but smaller, with
# strict bounds on everything it reads.
#
# Layers, one module each (flat files beside this one, not a subpackage: on a
# 1 MiB board every littlefs directory and every file costs whole 4 KiB blocks
# of the slot):
#   mqtt_codec      packets as pure functions, bytes in / bytes out;
#               malformed input raises MQTTProtocolError (bad data)
#   mqtt_transport  TLS stream on either runtime + PacketReader (one preallocated
#               buffer); network/TLS failures raise MQTTTransportError
#   mqtt_client     MQTTClient: one connection, publish/subscribe/inbox; raises,
#               never reconnects
#   this module     Supervisor: the reconnect policy (backoff with jitter), a
#               thin layer over the client as umqtt.robust over umqtt.simple
#
# Session: clean_session = False by default. The delivery guarantee for
# telemetry comes from the flash queue (a record leaves it only on PUBACK), so
# it does not depend on the broker session; the persistent session is kept so
# that QoS 1 commands published to medsentry/<id>/cmd while the device was
# offline are delivered when it reconnects, and so the broker keeps our
# subscription. After a reboot the in-RAM in-flight table is gone; the sender
# re-publishes from the queue head and the collector drops the duplicates.
import os

from board.compat import asyncio
from agent.telemetry.mqtt_codec import MQTTProtocolError  # noqa: F401
from agent.telemetry.mqtt_transport import MQTTTransportError, TLSConfig  # noqa: F401
from agent.telemetry.mqtt_client import MQTTClient, MQTTRefused  # noqa: F401


def backoff_ms(attempt, base_ms=500, max_ms=60000):
    # Exponential backoff with jitter: a random delay in [cap/2, cap], where
    # cap = min(max_ms, base_ms * 2^attempt).
    cap = base_ms << min(attempt, 20)
    if cap > max_ms:
        cap = max_ms
    r = int.from_bytes(os.urandom(2), "big")
    return cap // 2 + (cap - cap // 2) * r // 65535


class Supervisor:
    # Keeps an MQTTClient connected: connect, on_connected(client), run until
    # it raises, back off, reconnect. Recovery lives here, not in the client.
    # endpoints: optional list of (host, port), e.g. the nodes of a broker
    # cluster. After a failed attempt or a lost connection the next one is
    # tried, so a device moves on when its node dies.
    def __init__(self, client, on_connected=None, base_ms=500, max_ms=60000, endpoints=None):
        self.client = client
        self.endpoints = list(endpoints) if endpoints else None
        self.endpoint = 0
        self.on_connected = on_connected
        self.base_ms = base_ms
        self.max_ms = max_ms
        self.attempt = 0
        self.connects = 0
        self.failures = 0
        self.last_error = None
        self._stop = False

    def stop(self):
        self._stop = True
        self.client.close()

    async def run(self):
        while not self._stop:
            try:
                await self.client.connect()
                self.connects += 1
                self.attempt = 0
                if self.on_connected is not None:
                    await self.on_connected(self.client)
                await self.client.run()
            except (OSError, ValueError) as e:
                # MQTTTransportError / MQTTProtocolError from the client, or a
                # flash/data error from on_connected: back off and retry.
                self.last_error = e
                self.failures += 1
            except MemoryError as e:
                # The TLS handshake needs tens of KiB of heap at once; after a
                # collection a later attempt may fit. Back off like a failure.
                self.last_error = e
                self.failures += 1
                import gc

                gc.collect()
            finally:
                self.client.close()
            if self._stop:
                break
            if self.endpoints:
                self.endpoint = (self.endpoint + 1) % len(self.endpoints)
                self.client.host, self.client.port = self.endpoints[self.endpoint]
            delay = backoff_ms(self.attempt, self.base_ms, self.max_ms)
            self.attempt += 1
            await asyncio.sleep(delay / 1000)
