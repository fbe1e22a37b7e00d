"""Configuration of the fleet broker cluster: RabbitMQ 3.10 with its MQTT plugin.

Same security contract as the Mosquitto config (config.py), expressed in RabbitMQ:

* identity = certificate CN (``mqtt.ssl_cert_login``, ``ssl_cert_login_from =
  common_name``; AMQP collectors log in with SASL EXTERNAL, also the CN); no user
  has a password (``password_hash`` empty) and ``guest`` is deleted, so a
  user name/password in CONNECT (which RabbitMQ prefers to the certificate,
  see /work/shared/NOTES.md) cannot log in as anybody;
* topic authorisation on ``amq.topic`` (MQTT ``/`` is ``.`` in routing keys, and
  ``.`` is ``/``): a device writes only ``medsentry.<id>.{telemetry,status,...}``
  and reads only ``medsentry.<id>.cmd``; its resource permissions name only its
  own MQTT session queues (so it cannot take another client id's session), and it
  may hold DEVICE_CONNECTIONS connections in the whole cluster (user limit);
* the collectors read PARTITIONS durable quorum queues ``medsentry.collector.<k>``
  and may write nothing: the device topics on ``amq.topic`` are bound to the
  consistent-hash exchange ``medsentry.collectors`` (plugin
  rabbitmq_consistent_hash_exchange), which spreads them over the queues by
  the publishing device (the header ``x-medsentry-device`` our limiter sets), so
  all of a device's records share a partition. Each queue has one active
  consumer at a time (``x-single-active-consumer``): the collectors split the
  partitions between them and take over a dead one's (amqp.py);
* the per-client publish limit: each node loads our channel interceptor
  (rabbit_plugin.py); over-limit messages go to the exchange ``medsentry.shed``
  (no bindings, so devices may write it) and the nodes' shed reports on
  ``medsentry.broker.shed`` are bound into the collectors' partitions;
* the CRL is checked on every handshake (Erlang ``ssl_crl_hash_dir``: a directory
  of ``<issuer hash>.r0`` files, re-read per connection);
* TLS 1.2 AEAD suites / TLS 1.3 only.
"""
from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from host_tools.pki import FleetPKI
from host_tools.pki.records import service_role

from .plugin import BURST, RATE
from .rabbit_plugin import DEVICE_HEADER, REPORT_KEY, SHED_EXCHANGE, advanced_term
from .config import DEVICE_PUBLISH_TOPICS, DEVICE_SUBSCRIBE_TOPICS, RECORD_MAX, TOPIC_ROOT

COLLECTOR_EXCHANGE = "medsentry.collectors"
#: Partitions of the collector stream: the most collector processes that can
#: store in parallel (each partition has one active consumer).
PARTITIONS = 4
COLLECTOR_QUEUES = tuple(f"medsentry.collector.{k}" for k in range(PARTITIONS))
#: Connections one device certificate may hold in the whole cluster (user limit
#: ``max-connections``): its live one plus one the broker has not yet seen die (a
#: half-open connection lasts until the keepalive runs out). Without it one
#: certificate could open any number, each with the memory of a session, and one
#: rate-limit bucket per node.
DEVICE_CONNECTIONS = 2
#: What the collectors get: device records and the broker's shed reports.
COLLECTOR_BINDINGS = ("medsentry.*.telemetry", "medsentry.*.status", REPORT_KEY)
#: Erlang names of the TLS 1.2 AEAD suites of config.TLS12_CIPHERS plus TLS 1.3.
ERL_CIPHERS = ("TLS_AES_256_GCM_SHA384", "TLS_AES_128_GCM_SHA256", "TLS_CHACHA20_POLY1305_SHA256",
               "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384",
               "ECDHE-ECDSA-CHACHA20-POLY1305")


class FleetIdError(ValueError):
    """A device id that cannot be expressed in the cluster's routing keys."""


@dataclass(frozen=True)
class NodePorts:
    mqtt: int
    amqp: int
    dist: int


def routing_word(device_id: str) -> str:
    """The routing-key word of a device id (the MQTT plugin swaps ``.`` and ``/``)."""
    if "/" in device_id or "#" in device_id or "+" in device_id:
        raise FleetIdError(f"device id {device_id!r} cannot be a topic level")
    return device_id.replace(".", "/")


def _queue_names(client_id: str) -> str:
    return re.escape(f"mqtt-subscription-{client_id}qos") + "[01]"


def definitions(pki: FleetPKI, devices: list[str] | None = None) -> dict:
    """RabbitMQ definitions (users, permissions, topic permissions, the collector
    queue and its bindings) for every device, collector identity and operator."""
    if devices is None:
        devices = [r.device_id for r in pki.devices() if not r.revoked]
    collectors = pki.collector_identities() or ["collector"]
    users, perms, topics = [], [], []

    def user(name: str, limits: dict | None = None) -> None:
        users.append({"name": name, "password_hash": "", "tags": [],
                      "hashing_algorithm": "rabbit_password_hashing_sha256", **({"limits": limits} if limits else {})})

    # Writing to the shed exchange is what an over-limit publish becomes (the
    # interceptor redirects it there before the permission check); it has no bindings.
    shed = re.escape(SHED_EXCHANGE)
    pub = "|".join(DEVICE_PUBLISH_TOPICS)
    sub = "|".join(DEVICE_SUBSCRIBE_TOPICS)
    for dev in devices:
        word = re.escape(routing_word(dev))
        q = _queue_names(dev)
        user(dev, {"max-connections": DEVICE_CONNECTIONS})
        perms.append({"user": dev, "vhost": "/", "configure": f"^{q}$",
                      "write": f"^(amq\\.topic|{shed}|{q})$", "read": f"^(amq\\.topic|{q})$"})
        topics.append({"user": dev, "vhost": "/", "exchange": "amq.topic",
                       "write": f"^{TOPIC_ROOT}\\.{word}\\.({pub})$",
                       "read": f"^{TOPIC_ROOT}\\.{word}\\.({sub})$"})
    for name in collectors:
        user(name)
        perms.append({"user": name, "vhost": "/", "configure": "^$", "write": "^$",
                      "read": f"^({'|'.join(re.escape(q) for q in COLLECTOR_QUEUES)})$"})
        topics.append({"user": name, "vhost": "/", "exchange": "amq.topic", "write": "^$",
                       "read": "^$"})
    # The operator publishes commands over MQTT (its own session queues only).
    q = _queue_names("operator")
    user("operator")
    perms.append({"user": "operator", "vhost": "/", "configure": f"^{q}$",
                  "write": f"^(amq\\.topic|{shed}|{q})$", "read": f"^(amq\\.topic|{q})$"})
    topics.append({"user": "operator", "vhost": "/", "exchange": "amq.topic",
                   "write": f"^{TOPIC_ROOT}\\.[^.]+\\.cmd$", "read": f"^{TOPIC_ROOT}\\.[^.]+\\.status$"})
    # hashed on the publisher the limiter names (not the routing key): a device's
    # telemetry and status share a partition, so they are stored in its order
    exchanges = [{"name": COLLECTOR_EXCHANGE, "vhost": "/", "type": "x-consistent-hash", "durable": True,
                  "auto_delete": False, "internal": True, "arguments": {"hash-header": DEVICE_HEADER}},
                 {"name": SHED_EXCHANGE, "vhost": "/", "type": "fanout", "durable": True,
                  "auto_delete": False, "internal": False, "arguments": {}}]
    queues = [{"name": q, "vhost": "/", "durable": True, "auto_delete": False,
               "arguments": {"x-queue-type": "quorum", "x-single-active-consumer": True}}
              for q in COLLECTOR_QUEUES]
    bindings = [{"source": "amq.topic", "vhost": "/", "destination": COLLECTOR_EXCHANGE,
                 "destination_type": "exchange", "routing_key": rk, "arguments": {}}
                for rk in COLLECTOR_BINDINGS]
    # equal weights: each queue gets one point on the hash ring per unit of weight
    bindings += [{"source": COLLECTOR_EXCHANGE, "vhost": "/", "destination": q,
                  "destination_type": "queue", "routing_key": "1", "arguments": {}}
                 for q in COLLECTOR_QUEUES]
    return {"users": users, "vhosts": [{"name": "/"}], "permissions": perms, "topic_permissions": topics,
            "exchanges": exchanges, "queues": queues, "bindings": bindings}


def is_service(name: str) -> bool:
    return service_role(name) is not None


def render_conf(ports: NodePorts, host: str, peers: list[str]) -> str:
    lines = [
        "# medsentry fleet broker node (generated; do not edit)",
        "listeners.tcp = none",
        f"listeners.ssl.default = {host}:{ports.amqp}",
        "auth_mechanisms.1 = EXTERNAL",
        "ssl_cert_login_from = common_name",
        "mqtt.listeners.tcp = none",
        f"mqtt.listeners.ssl.default = {host}:{ports.mqtt}",
        "mqtt.ssl_cert_login = true",
        "mqtt.allow_anonymous = false",
        "mqtt.vhost = /",
        "mqtt.exchange = amq.topic",
        "mqtt.durable_queue_type = quorum",
        # quorum queue leaders spread over the nodes (the default puts every
        # collector partition's leader on the node that imported the definitions)
        "queue_leader_locator = balanced",
        "cluster_formation.peer_discovery_backend = classic_config",
        "cluster_partition_handling = pause_minority",
        # One sealed record at most (SEALING.md), as Mosquitto's message_size_limit:
        # a bigger publish is refused (channel error), never queued for collectors.
        f"max_message_size = {RECORD_MAX}",
        "log.file.level = info",
        "log.console = false",
    ]
    lines += [f"cluster_formation.classic_config.nodes.{i} = {p}" for i, p in enumerate(peers, 1)]
    return "\n".join(lines) + "\n"


def render_advanced(pki: FleetPKI, crl_dir: Path, rate_limit: int = RATE, rate_burst: int = BURST) -> str:
    """advanced.config: the TLS options (CRL check needs Erlang terms) and the
    per-client publish limit (rabbit_plugin.py)."""
    ciphers = ", ".join(f'"{c}"' for c in ERL_CIPHERS)
    return (
        "[{rabbit, [{ssl_options, [\n"
        f'  {{cacertfile, "{pki.ca_cert_path}"}},\n'
        f'  {{certfile, "{pki.server_cert_path}"}},\n'
        f'  {{keyfile, "{pki.server_key_path}"}},\n'
        "  {verify, verify_peer}, {fail_if_no_peer_cert, true},\n"
        "  {versions, ['tlsv1.3', 'tlsv1.2']},\n"
        f"  {{ciphers, [{ciphers}]}},\n"
        "  {crl_check, peer},\n"
        f'  {{crl_cache, {{ssl_crl_hash_dir, {{internal, [{{dir, "{crl_dir}"}}]}}}}}}\n'
        "]}]},\n"
        f" {advanced_term(rate_limit, rate_burst)}].\n"
    )


def write_crl_dir(pki: FleetPKI, crl_dir: Path) -> Path:
    """Copy the fleet CRL to ``<crl_dir>/<issuer hash>.r0`` (what ssl_crl_hash_dir reads)."""
    crl_dir.mkdir(parents=True, exist_ok=True)
    out = subprocess.run(["openssl", "crl", "-hash", "-noout", "-in", str(pki.crl_pem_path)],
                         capture_output=True, text=True, check=True)
    target = crl_dir / f"{out.stdout.strip()}.r0"
    tmp = target.with_suffix(".tmp")
    tmp.write_bytes(pki.crl_pem_path.read_bytes())
    tmp.replace(target)
    return target


def write_definitions(pki: FleetPKI, path: Path, devices: list[str] | None = None) -> Path:
    path.write_text(json.dumps(definitions(pki, devices), indent=1) + "\n")
    path.chmod(0o600)
    return path
