#!/usr/bin/env bash
# Run the whole test suite: start the services the tests need, run pytest, stop them again.
set -euo pipefail
cd "$(dirname "$0")/.."
# Leftover mounts from an earlier killed run would make mount tests fail for the wrong reason.
awk '$3 ~ /^fuse/ && $2 ~ /litefs|pytest/ {print $2}' /proc/mounts | while read -r mnt; do
    fusermount3 -u -z "$mnt" 2>/dev/null || true
done
exec .venv/bin/python -m pytest "$@"
