#!/usr/bin/env bash
# Run the whole test suite: start the services the tests need, run pytest, stop them again.
set -euo pipefail
cd "$(dirname "$0")/.."
# Leftover mounts from an earlier killed run would make mount tests fail for the wrong reason.
awk '$3 ~ /^fuse/ && $2 ~ /litefs|pytest/ {print $2}' /proc/mounts | while read -r mnt; do
    fusermount3 -u -z "$mnt" 2>/dev/null || true
done
# Real services: Consul (Debian bullseye's .deb, fetched through this machine's own mirror) and etcd.
# The test fixtures start their own instances on free loopback ports; this only installs what is
# missing, once, so a failed download is reported here (the Consul tests then skip loudly).
bash scripts/services.sh install || echo "test: WARNING: could not install every service; tests that need one will skip" >&2
# Prometheus (Debian's package) scrapes a node in the metrics plugin's tests.
if ! command -v prometheus >/dev/null; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus >/dev/null 2>&1 \
        || echo "test: WARNING: could not install prometheus; its test will skip" >&2
fi
# Two workers (pytest-xdist), one test file each at a time: most tests wait on real nodes and
# services rather than compute, so this halves the wall time on 2 vCPUs. LITEFS_TEST_WORKERS=0 runs
# everything in one process.
exec .venv/bin/python -m pytest -n "${LITEFS_TEST_WORKERS:-2}" --dist loadfile "$@"
