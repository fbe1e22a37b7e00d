"""The fleet cluster's per-client publish limit: build ``ratelimit/medsentry_ratelimit.erl``
(a RabbitMQ 3.10 channel interceptor, see its header) into a plugin directory with
``erlc`` against the installed RabbitMQ's headers, once per source version, into
the per-user cache beside the Mosquitto plugin.

Needs ``erlc`` (Debian ``erlang-base``, a dependency of ``rabbitmq-server``). A
cluster without the limit would let one device certificate fill the collectors'
partitions in front of every other device's records, so a failed build stops
the cluster from starting (fail closed, with the reason)."""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from .plugin import BURST, RATE, PluginBuildError, cache_dir

SOURCE = Path(__file__).resolve().with_name("ratelimit") / "medsentry_ratelimit.erl"
APP = "medsentry_ratelimit"
VERSION = "1.0.0"


def _rabbit_plugins() -> Path:
    """The installed RabbitMQ's own plugins directory (its applications and headers)."""
    found = sorted(Path("/usr/lib/rabbitmq/lib").glob("rabbitmq_server-*/plugins"))
    return found[-1] if found else Path("/usr/lib/rabbitmq/lib/rabbitmq_server-3.10.8/plugins")


RABBIT_PLUGINS = _rabbit_plugins()
#: Over-limit messages are sent here: no bindings, so they are routed nowhere.
SHED_EXCHANGE = "medsentry.shed"
#: The routing key of the broker's shed reports (MQTT topic medsentry/broker/shed).
REPORT_KEY = "medsentry.broker.shed"
#: The header naming the publisher (the user) on every message let through; the
#: collectors' consistent-hash exchange hashes on it.
DEVICE_HEADER = "x-medsentry-device"


def _app_file() -> str:
    return (f'{{application, {APP}, [{{description, "medsentry per-client publish limit"}}, '
            f'{{vsn, "{VERSION}"}}, {{modules, [{APP}]}}, {{registered, []}}, '
            f'{{applications, [kernel, stdlib, rabbit_common, rabbit]}}, '
            f'{{env, [{{rate, {RATE}}}, {{burst, {BURST}}}]}}]}}.\n')


def plugins_dir() -> Path:
    """A directory holding the built plugin (``<dir>/medsentry_ratelimit-1.0.0/ebin``),
    for RABBITMQ_PLUGINS_DIR; built on first use."""
    # per source, app file and RabbitMQ installation (its path names its version)
    digest = hashlib.sha256(SOURCE.read_bytes() + _app_file().encode() + str(RABBIT_PLUGINS).encode()
                            ).hexdigest()[:16]
    out = cache_dir() / f"rabbit-plugins-{digest}"
    if (out / f"{APP}-{VERSION}" / "ebin" / f"{APP}.beam").exists():
        return out
    erlc = shutil.which("erlc")
    headers = sorted(RABBIT_PLUGINS.glob("rabbit_common-*/include/rabbit.hrl"))
    if erlc is None or not headers:
        why = "no erlc" if erlc is None else f"no rabbit_common headers in {RABBIT_PLUGINS}"
        raise PluginBuildError(f"cannot build the cluster's rate-limit plugin ({why}): install the Debian packages "
                               "rabbitmq-server erlang-base (scripts/setup.sh does)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="rabbit-plugins-", dir=out.parent))
    try:
        ebin = tmp / f"{APP}-{VERSION}" / "ebin"
        ebin.mkdir(parents=True)
        paths = [a for p in sorted(RABBIT_PLUGINS.glob("*/ebin")) for a in ("-pa", str(p))]
        proc = subprocess.run([erlc, "-Werror", *paths, "-o", str(ebin), str(SOURCE)],
                              capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise PluginBuildError(f"building the cluster's rate-limit plugin failed:\n"
                                   f"{(proc.stdout + proc.stderr).strip()}")
        (ebin / f"{APP}.app").write_text(_app_file())
        try:
            tmp.rename(out)  # concurrent builders: the first complete one wins, never a partial dir
        except OSError:
            if not out.exists():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out


def advanced_term(rate: int = RATE, burst: int = BURST) -> str:
    """The advanced.config entry that sets the limit."""
    return f"{{{APP}, [{{rate, {rate}}}, {{burst, {burst}}}]}}"
