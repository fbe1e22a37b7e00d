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
# Layers, one module each:
#   codec       packets as pure functions, bytes in / bytes out;
#               malformed input raises MQTTProtocolError (bad data)
#   transport   TLS stream on either runtime + PacketReader (one preallocated
#               buffer); network/TLS failures raise MQTTTransportError
#   client      MQTTClient: one connection, publish/subscribe/inbox; raises,
#               never reconnects
#   supervisor  Supervisor: the reconnect policy (backoff with jitter), a
#               thin layer over the client as umqtt.robust over umqtt.simple
#
# Session: clean_session = False by default. The delivery guarantee for
# telemetry comes from the flash queue (a record leaves it only on PUBACK), so
# it does not depend on the broker session; the persistent session is kept so
# that QoS 1 commands published to medsentry/<id>/cmd while the device was
# offline are delivered when it reconnects, and so the broker keeps our
# subscription. After a reboot the in-RAM in-flight table is gone; the sender
# re-publishes from the queue head and the collector drops the duplicates.
from agent.telemetry.mqtt.codec import MQTTProtocolError  # noqa: F401
from agent.telemetry.mqtt.transport import MQTTTransportError, TLSConfig  # noqa: F401
from agent.telemetry.mqtt.client import MQTTClient, MQTTRefused  # noqa: F401
from agent.telemetry.mqtt.supervisor import Supervisor, backoff_ms  # noqa: F401
