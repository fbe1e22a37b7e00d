#!/usr/bin/env bash
# Idempotent set-up: Debian packages the project needs, then .venv with the
# project installed editable plus its dev dependencies.
# Re-running it does nothing when everything is already in place.
set -euo pipefail
cd "$(dirname "$0")/.."

# Overridable for tests of this script: MEDSENTRY_DEBIAN_PACKAGES="a b c".
read -r -a DEBIAN_PACKAGES <<< "${MEDSENTRY_DEBIAN_PACKAGES:-mosquitto mosquitto-clients mosquitto-dev libmosquitto-dev gcc libc6-dev faketime strace chromium freeradius eapoltest nftables iproute2 openssl rabbitmq-server erlang-base postgresql}"
PYTHON=${PYTHON:-python3}
CHECK_ONLY=0
if [ "${1:-}" = "--check" ]; then
    # Report what is missing, install nothing.
    CHECK_ONLY=1
fi

missing=()
for pkg in "${DEBIAN_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done

if [ ${#missing[@]} -gt 0 ] && [ "$CHECK_ONLY" = 1 ]; then
    echo "setup: missing Debian packages: ${missing[*]} (install: apt-get update && apt-get install -y ${missing[*]})" >&2
    exit 2
fi
if [ "$CHECK_ONLY" = 1 ]; then
    echo "setup: Debian packages present: ${DEBIAN_PACKAGES[*]}"
    exit 0
fi

if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
            SUDO=sudo
        else
            echo "setup: missing Debian packages: ${missing[*]}" >&2
            echo "setup: run as root, or install them first:  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
            exit 2
        fi
    else
        SUDO=
    fi
    echo "setup: installing Debian packages: ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
    echo "setup: Debian packages present: ${DEBIAN_PACKAGES[*]}"
fi

# Mosquitto's and FreeRADIUS's Debian packages may start system services; the project
# never uses it (tests and the demo start their own on free loopback ports).

if ! "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'; then
    echo "setup: Python >= 3.11 is required ($PYTHON is $("$PYTHON" --version 2>&1))" >&2
    exit 2
fi

stamp_want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ -x .venv/bin/python ] && [ -f .venv/.setup-stamp ] && [ "$(cat .venv/.setup-stamp)" = "$stamp_want" ]; then
    echo "setup: .venv up to date"
    exit 0
fi

if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv"
    "$PYTHON" -m venv .venv
fi
echo "setup: installing the project (editable) with dev dependencies"
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[dev]'
echo "$stamp_want" > .venv/.setup-stamp
echo "setup: done"
