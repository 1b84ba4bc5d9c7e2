#!/usr/bin/env bash
# `make demo`: a real three-node litefs-py cluster on this machine.
#
# Three `litefs mount` processes on loopback (static lease: node1 is the primary, node2 and node3
# replicate from it), each with its own data and mount directory under demo-run/. The demo writes
# through the primary's mount, reads the rows back through both replicas' mounts, and shows every
# node's position and replication lag. Ctrl-C (or the end of the script) stops all three cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD/demo-run
LITEFS=$PWD/.venv/bin/litefs
PY=$PWD/.venv/bin/python
NODES=(node1 node2 node3)
PORTS=(20202 20203 20204)
PIDS=()

stop() {
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do
        kill -INT "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    echo "== cluster stopped; litefs mounts left: $(grep -c " $ROOT/" /proc/mounts || true)"
}
trap stop EXIT
trap 'echo; echo "== interrupted"; exit 130' INT TERM

mkdir -p "$ROOT"
for n in "${NODES[@]}"; do
    # A previous demo killed hard may have left its mount behind.
    fusermount3 -u -z "$ROOT/$n/mnt" 2>/dev/null || true
    rm -rf "${ROOT:?}/$n"
    mkdir -p "$ROOT/$n/data" "$ROOT/$n/mnt"
done

PRIMARY_URL="http://127.0.0.1:${PORTS[0]}"
for i in 0 1 2; do
    n=${NODES[$i]}
    candidate=false
    [ "$i" -eq 0 ] && candidate=true
    cat > "$ROOT/$n/litefs.yml" <<YML
fuse:
  dir: "$ROOT/$n/mnt"
data:
  dir: "$ROOT/$n/data"
http:
  addr: "127.0.0.1:${PORTS[$i]}"
lease:
  type: static
  # A static lease names the primary on every node: node1.
  hostname: "node1"
  advertise-url: "$PRIMARY_URL"
  candidate: $candidate
  reconnect-delay: "200ms"
YML
    "$LITEFS" mount -config "$ROOT/$n/litefs.yml" > "$ROOT/$n/node.log" 2>&1 &
    PIDS+=($!)
    echo "== started $n (pid $!, primary: $candidate, api http://127.0.0.1:${PORTS[$i]}, mount $ROOT/$n/mnt)"
done

wait_for() { # wait_for <description> <command...>: poll for up to 10 s
    local what=$1
    shift
    for _ in $(seq 1 200); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    echo "timed out waiting for $what" >&2
    for n in "${NODES[@]}"; do echo "--- $n log:"; cat "$ROOT/$n/node.log"; done >&2
    exit 1
}
for n in "${NODES[@]}"; do
    wait_for "$n to mount" grep -q " $ROOT/$n/mnt " /proc/mounts
done
echo "== all three mounted"

DB=demo.db
# A busy timeout, as any app on LiteFS needs: while the primary reads a snapshot for a replica that
# just saw the new database, it holds SQLite's SHARED lock and a writer has to wait a moment.
sqlite3 -cmd ".timeout 5000" "$ROOT/node1/mnt/$DB" "CREATE TABLE greetings (id INTEGER PRIMARY KEY, text TEXT)"
for word in hello bonjour hallo hola; do
    sqlite3 -cmd ".timeout 5000" "$ROOT/node1/mnt/$DB" "INSERT INTO greetings (text) VALUES ('$word')"
done
PRIMARY_POS=$(cat "$ROOT/node1/mnt/$DB-pos")
echo "== wrote 5 transactions on node1 (primary); position $PRIMARY_POS"

same_pos() { [ "$(cat "$ROOT/$1/mnt/$DB-pos" 2>/dev/null)" = "$PRIMARY_POS" ]; }
for n in node2 node3; do
    wait_for "$n to catch up" same_pos "$n"
done

for n in node2 node3; do
    echo "== rows read through $n's mount (a replica):"
    sqlite3 -box "$ROOT/$n/mnt/$DB" "SELECT * FROM greetings"
done

echo "== a write on a replica is refused:"
sqlite3 "$ROOT/node2/mnt/$DB" "INSERT INTO greetings (text) VALUES ('nope')" 2>&1 | sed 's/^/   /' || true

echo "== positions and lag (ms since the primary's last heartbeat):"
printf '   %-6s %-8s %-36s %-12s %s\n' node role "$DB-pos" .lag .primary
for n in "${NODES[@]}"; do
    role=replica
    [ "$n" = node1 ] && role=primary
    primary=$(cat "$ROOT/$n/mnt/.primary" 2>/dev/null || echo "-")
    printf '   %-6s %-8s %-36s %-12s %s\n' "$n" "$role" "$(cat "$ROOT/$n/mnt/$DB-pos")" \
        "$(cat "$ROOT/$n/mnt/.lag")" "$primary"
done

echo "== one more write; replicas follow within milliseconds:"
sqlite3 -cmd ".timeout 5000" "$ROOT/node1/mnt/$DB" "INSERT INTO greetings (text) VALUES ('ciao')"
PRIMARY_POS=$(cat "$ROOT/node1/mnt/$DB-pos")
for n in node2 node3; do
    wait_for "$n to catch up" same_pos "$n"
    echo "   $n: $(sqlite3 "$ROOT/$n/mnt/$DB" "SELECT (SELECT count(*) FROM greetings) || ' rows, last: ' \
        || text FROM greetings ORDER BY id DESC LIMIT 1")  position $(cat "$ROOT/$n/mnt/$DB-pos")"
done

echo "== node2 /info:"
"$PY" -c "import httpx, sys; sys.stdout.write(httpx.get('http://127.0.0.1:${PORTS[1]}/info').text)"

if [ -t 0 ] && [ "${DEMO_WAIT:-1}" = 1 ]; then
    echo "== cluster running; try: sqlite3 $ROOT/node3/mnt/$DB 'SELECT * FROM greetings'"
    echo "   press Enter (or Ctrl-C) to stop all three nodes"
    read -r _ || true
fi
