#!/usr/bin/env bash
# Install what litefs-py needs, skipping what is already there. Safe to run twice.
#   - Debian packages: fuse3 (fusermount3), libfuse3-dev + pkg-config (to build pyfuse3), sqlite3 (CLI used by tests)
#   - .venv with the core and every plugin in editable mode, plus the test tools
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(fuse3 libfuse3-dev pkg-config sqlite3 gcc python3-dev python3-venv)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    echo "install: apt packages: ${missing[*]}"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    export DEBIAN_FRONTEND=noninteractive
    # A fresh machine may have empty package lists: update only when the first attempt fails.
    $SUDO apt-get install -y -q "${missing[@]}" >/dev/null || {
        $SUDO apt-get update -q >/dev/null
        $SUDO apt-get install -y -q "${missing[@]}" >/dev/null
    }
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "install: creating .venv"
    "$PYTHON" -m venv .venv
fi

# Reinstall only when a requirements or project file changed since the last install.
stamp=.venv/.litefs-installed
if [ ! -f "$stamp" ] || [ -n "$(find requirements-dev.txt pyproject.toml plugins/*/pyproject.toml -newer "$stamp" 2>/dev/null)" ] \
    || ! .venv/bin/python -c "import litefs, pyfuse3" 2>/dev/null; then
    echo "install: python packages (first time builds pyfuse3 from source, about a minute)"
    .venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "is ignored" || true
    .venv/bin/python -m pip install -q -r requirements-dev.txt 2>&1 | grep -v -e "is ignored" -e "^ *$" || true
    .venv/bin/python -c "import litefs, pyfuse3, litefs_lease_static"
    touch "$stamp"
fi
echo "install: ok (.venv/bin/litefs)"
