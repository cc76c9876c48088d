# Sourced by scripts/demo and scripts/test: a virtual environment in .venv with anxmon installed.
# Works on a fresh Debian machine with Python 3.11; installs what is missing (as root: apt packages).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}

as_root_install() {  # apt-get install the given Debian packages when we are root
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "[anxmon] installing Debian packages: $*" >&2
        apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
    else
        echo "[anxmon] please install: $* (e.g. sudo apt-get install $*)" >&2
        return 1
    fi
}

if [ ! -x .venv/bin/python ]; then
    if ! "$PYTHON" -m venv .venv 2>/dev/null; then
        rm -rf .venv
        as_root_install python3-venv
        "$PYTHON" -m venv .venv
    fi
fi
stamp=.venv/.anxmon-installed
want=$(cat pyproject.toml | sha256sum | cut -c1-16)-${ANXMON_EXTRAS:-dev}
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "[anxmon] installing anxmon and its dependencies into .venv (first run takes a minute)" >&2
    .venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true  # an old pip still works
    if ! .venv/bin/python -m pip install -q -e ".[${ANXMON_EXTRAS:-dev}]" >.venv/pip.log 2>&1; then
        cat .venv/pip.log >&2
        echo "[anxmon] installing into .venv failed (log above, also in .venv/pip.log)" >&2
        exit 1
    fi
    echo "$want" > "$stamp"
fi
