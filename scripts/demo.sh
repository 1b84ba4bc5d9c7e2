#!/usr/bin/env bash
# `make demo`: mount one litefs-py node with the built-in defaults (static lease, this node primary),
# write to SQLite through the mount, and show the LTX position each commit produced.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD/demo-run
LITEFS=$PWD/.venv/bin/litefs
mkdir -p "$ROOT"
# A previous demo killed hard may have left its mount behind.
fusermount3 -u -z "$ROOT/mnt" 2>/dev/null || true
rm -rf "$ROOT/data" "$ROOT/mnt"
mkdir -p "$ROOT/data" "$ROOT/mnt"
cat > "$ROOT/litefs.yml" <<YML
fuse:
  dir: "$ROOT/mnt"
data:
  dir: "$ROOT/data"
http:
  addr: "127.0.0.1:20202"
lease:
  type: static
  hostname: "\${HOSTNAME}"
  advertise-url: "http://127.0.0.1:20202"
  candidate: true
YML

echo "== starting: litefs mount -config $ROOT/litefs.yml"
"$LITEFS" mount -config "$ROOT/litefs.yml" > "$ROOT/node.log" 2>&1 &
NODE=$!
stop() {
    if kill -0 "$NODE" 2>/dev/null; then
        kill -INT "$NODE"
        wait "$NODE" || true
    fi
    echo "== node stopped; mount gone: $(grep -c " $ROOT/mnt " /proc/mounts || true) mounts left"
}
trap stop EXIT

for _ in $(seq 1 100); do
    grep -q " $ROOT/mnt " /proc/mounts && break
    kill -0 "$NODE" 2>/dev/null || { cat "$ROOT/node.log"; exit 1; }
    sleep 0.1
done
echo "== mounted at $ROOT/mnt"

DB=$ROOT/mnt/demo.db
sqlite3 "$DB" "CREATE TABLE greetings (id INTEGER PRIMARY KEY, text TEXT)"
echo "after CREATE TABLE:   position $(cat "$DB-pos")"
for word in hello bonjour hallo; do
    sqlite3 "$DB" "INSERT INTO greetings (text) VALUES ('$word')"
    echo "after INSERT '$word': position $(cat "$DB-pos")"
done
echo "== rows read back through the mount:"
sqlite3 -box "$DB" "SELECT * FROM greetings"
echo "== LTX files written (one per transaction):"
ls "$ROOT/data/dbs/demo.db/ltx/"
echo "== the newest one:"
"$LITEFS" ltx dump "$ROOT/data/dbs/demo.db/ltx/$(ls "$ROOT/data/dbs/demo.db/ltx/" | tail -1)"
echo "== node API /info:"
curl -s http://127.0.0.1:20202/info || true
