"""The broker's per-client publish limit: build ``ratelimit/medsentry_ratelimit.c``
(a Mosquitto 2.0 plugin, see its header) into a shared object with the system C
compiler, once per source version, into a per-user cache.

Needs the Debian packages ``mosquitto-dev`` and ``libmosquitto-dev`` (headers) and
``gcc`` + ``libc6-dev`` (scripts/setup.sh installs them). Without them the broker
does not start: a broker without the limit would let one device certificate delay
every other device's records (issue 11), so this fails closed with the reason."""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

SOURCE = Path(__file__).resolve().with_name("ratelimit") / "medsentry_ratelimit.c"
HEADERS = ("/usr/include/mosquitto_broker.h", "/usr/include/mosquitto_plugin.h", "/usr/include/mosquitto.h")
#: Defaults: the agent's flash backlog drains at ~280 records/s after an outage
#: (README, telemetry), so an honest device stays under 500/s; 2,000 is a burst.
RATE = 500
BURST = 2000
NOTIFY_TOPIC = "medsentry/broker/shed"


class PluginBuildError(RuntimeError):
    """The rate-limit plugin cannot be built here (missing compiler or headers)."""


def cache_dir() -> Path:
    base = os.environ.get("MEDSENTRY_CACHE") or os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "medsentry" / "broker"


def plugin_path() -> Path:
    """The built plugin for the current source, compiled on first use."""
    src = SOURCE.read_bytes()
    digest = hashlib.sha256(src).hexdigest()[:16]
    out = cache_dir() / f"medsentry_ratelimit-{digest}.so"
    if out.exists():
        return out
    cc = shutil.which(os.environ.get("CC", "cc"))
    missing = [h for h in HEADERS if not Path(h).exists()]
    if cc is None or missing:
        why = "no C compiler" if cc is None else "no " + ", ".join(missing)
        raise PluginBuildError(f"cannot build the broker's rate-limit plugin ({why}): install the Debian packages "
                               f"mosquitto-dev libmosquitto-dev gcc libc6-dev (scripts/setup.sh does)")
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=out.parent)
    os.close(fd)
    try:
        proc = subprocess.run([cc, "-O2", "-Wall", "-Wextra", "-fPIC", "-shared", "-o", tmp, str(SOURCE)],
                              capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise PluginBuildError(f"building the broker's rate-limit plugin failed:\n{proc.stderr.strip()}")
        os.chmod(tmp, 0o755)
        os.replace(tmp, out)  # concurrent builders: the last complete one wins, never a partial file
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


def config_lines(path: Path, rate: int = RATE, burst: int = BURST, notify_topic: str = NOTIFY_TOPIC) -> list[str]:
    """mosquitto.conf lines that load the plugin (global, before the listener)."""
    return [f"plugin {path}", f"plugin_opt_rate {rate}", f"plugin_opt_burst {burst}",
            f"plugin_opt_notify_topic {notify_topic}"]
