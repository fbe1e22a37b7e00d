# Device configuration, /state/config.json, written at provisioning.
# Missing keys take the defaults below.
import json

DEFAULTS = {
    "update": {
        "metadata_url": None,  # TUF metadata base URL; None: updates disabled
        "targets_url": None,  # TUF targets base URL
        "ca": None,  # CA file (in /state) for HTTPS
        "channel": "stable",
        "check_every_s": 300,
        "window": "",  # maintenance window "HH:MM-HH:MM" (UTC); "" = any time
        "trial_deadline_s": 300,
        "trial_max_attempts": 3,
        "health_loops": 3,  # agent loops a trial must complete before confirming
    },
    "status_every_ms": 1000,
    "watchdog_ms": 5000,
}
CONFIG = "config.json"


def _merge(base, over):
    out = {}
    for k in base:
        out[k] = base[k]
    for k in over:
        if isinstance(out.get(k), dict) and isinstance(over[k], dict):
            out[k] = _merge(out[k], over[k])
        else:
            out[k] = over[k]
    return out


def load(state_dir):
    try:
        with open(state_dir + "/" + CONFIG) as f:
            over = json.loads(f.read())
    except OSError:
        over = {}
    except ValueError:
        # Keep running on defaults; the status report says the config is bad.
        over = {"config_error": "config.json is not valid JSON"}
    if not isinstance(over, dict):
        over = {"config_error": "config.json is not an object"}
    return _merge(DEFAULTS, over)


def section(cfg, name, defaults):
    # cfg[name] over `defaults`, keeping only known keys with positive int
    # values (a bad value never turns a limit off).
    out = {}
    for k in defaults:
        out[k] = defaults[k]
    over = cfg.get(name)
    if isinstance(over, dict):
        for k in over:
            if k in out and isinstance(over[k], int) and not isinstance(over[k], bool) and over[k] > 0:
                out[k] = over[k]
    return out
