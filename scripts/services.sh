#!/usr/bin/env bash
# Real backing services for the lease tests: a Consul dev agent and a single etcd member, on loopback.
#
#   scripts/services.sh install   fetch what is missing (etcd-server from apt; Consul 1.8.7 from Debian
#                                 bullseye via a temporary sources list, extracted into .services/consul)
#   scripts/services.sh start     install, then start both services on free 127.0.0.1 ports
#   scripts/services.sh env       print `export` lines for the running services (eval "$(... env)")
#   scripts/services.sh stop      stop what `start` started (by PID) and remove its data
#
# The pytest fixtures (litefs.testing_services) start their own services when these variables are not
# set, so `start` is only needed to share one set of services between several runs or tools.
# Nothing here writes a mirror host name into the repository: the Debian mirror is read from this
# machine's own apt sources at run time.
set -euo pipefail
cd "$(dirname "$0")/.."

SERVICES_DIR=${LITEFS_SERVICES_DIR:-$PWD/.services}
CONSUL_ROOT=$SERVICES_DIR/consul/root
CONSUL_BIN=$CONSUL_ROOT/usr/bin/consul
RUN_DIR=$SERVICES_DIR/run
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

log() { echo "services: $*" >&2; }

# The first Debian (not -security) mirror URI of this machine's apt sources, deb822 or one-line style.
debian_mirror() {
    local uri=""
    if compgen -G "/etc/apt/sources.list.d/*.sources" >/dev/null; then
        uri=$(sed -n 's/^URIs:[[:space:]]*//p' /etc/apt/sources.list.d/*.sources | tr ' ' '\n' \
            | grep -v -e '-security' -e '^$' | grep '/debian/\?$' | head -1 || true)
    fi
    if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
        uri=$(awk '$1 == "deb" && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' \
            /etc/apt/sources.list)
    fi
    [ -n "$uri" ] || return 1
    echo "$uri"
}

install_etcd() {
    command -v etcd >/dev/null && return 0
    log "installing etcd-server from apt"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get install -y -q etcd-server >/dev/null 2>&1 || {
        $SUDO apt-get update -q >/dev/null
        $SUDO apt-get install -y -q etcd-server >/dev/null
    }
    command -v etcd >/dev/null
}

install_consul() {
    if command -v consul >/dev/null || [ -x "$CONSUL_BIN" ]; then
        return 0
    fi
    local mirror tmp
    mirror=$(debian_mirror) || { log "cannot find a Debian mirror in /etc/apt sources"; return 1; }
    tmp=$(mktemp -d)
    # A private apt state: the system's lists and cache are not touched.
    mkdir -p "$tmp/lists/partial" "$tmp/cache/archives/partial" "$tmp/out"
    echo "deb $mirror bullseye main" >"$tmp/sources.list"
    local opts=(-o "Dir::Etc::sourcelist=$tmp/sources.list" -o "Dir::Etc::sourceparts=-"
        -o "Dir::State::Lists=$tmp/lists" -o "Dir::Cache=$tmp/cache")
    # The private dirs belong to us, not to apt's sandbox user.
    [ "$(id -u)" -ne 0 ] || opts+=(-o "APT::Sandbox::User=root")
    log "fetching consul (Debian bullseye) through a temporary sources list"
    if apt-get -q "${opts[@]}" update >"$tmp/log" 2>&1 \
        && (cd "$tmp/out" && apt-get -q "${opts[@]}" download consul >>"$tmp/log" 2>&1); then
        mkdir -p "$SERVICES_DIR/consul"
        rm -rf "$CONSUL_ROOT"
        dpkg-deb -x "$tmp"/out/consul_*.deb "$CONSUL_ROOT"
        rm -rf "$tmp"
        "$CONSUL_BIN" version | head -1 >&2
    else
        log "!!! could not download consul; Consul-backed tests will be SKIPPED. apt said:"
        tail -5 "$tmp/log" >&2
        rm -rf "$tmp"
        return 1
    fi
}

consul_bin() { command -v consul 2>/dev/null || echo "$CONSUL_BIN"; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_http() { # url expected-substring seconds
    local deadline=$((SECONDS + $3))
    until python3 -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=1).read().decode())' "$1" 2>/dev/null | grep -q "$2"; do
        [ $SECONDS -lt $deadline ] || { log "timed out waiting for $1"; return 1; }
        sleep 0.1
    done
}

start() {
    [ ! -f "$RUN_DIR/env" ] || { log "already running (scripts/services.sh stop first)"; cat "$RUN_DIR/env"; return 0; }
    install_etcd
    local have_consul=1
    install_consul || have_consul=0
    mkdir -p "$RUN_DIR"
    : >"$RUN_DIR/env.tmp"

    local ec ep em
    ec=$(free_port) ep=$(free_port) em=$(free_port)
    etcd --name svc --data-dir "$RUN_DIR/etcd" --listen-client-urls "http://127.0.0.1:$ec" \
        --advertise-client-urls "http://127.0.0.1:$ec" --listen-peer-urls "http://127.0.0.1:$ep" \
        --initial-advertise-peer-urls "http://127.0.0.1:$ep" --initial-cluster "svc=http://127.0.0.1:$ep" \
        --listen-metrics-urls "http://127.0.0.1:$em" >"$RUN_DIR/etcd.log" 2>&1 &
    echo $! >"$RUN_DIR/etcd.pid"
    wait_http "http://127.0.0.1:$ec/health" '"health":"true"' 20
    echo "export LITEFS_TEST_ETCD_ENDPOINTS=http://127.0.0.1:$ec" >>"$RUN_DIR/env.tmp"

    if [ $have_consul = 1 ]; then
        local http serf_lan serf_wan server
        http=$(free_port) serf_lan=$(free_port) serf_wan=$(free_port) server=$(free_port)
        "$(consul_bin)" agent -dev -bind=127.0.0.1 -client=127.0.0.1 -http-port="$http" -dns-port=-1 \
            -grpc-port=-1 -serf-lan-port="$serf_lan" -serf-wan-port="$serf_wan" -server-port="$server" \
            -data-dir="$RUN_DIR/consul" >"$RUN_DIR/consul.log" 2>&1 &
        echo $! >"$RUN_DIR/consul.pid"
        wait_http "http://127.0.0.1:$http/v1/status/leader" "127.0.0.1:$server" 20
        echo "export LITEFS_TEST_CONSUL_URL=http://127.0.0.1:$http" >>"$RUN_DIR/env.tmp"
    fi
    mv "$RUN_DIR/env.tmp" "$RUN_DIR/env"
    cat "$RUN_DIR/env"
}

stop() {
    local name pid
    for name in consul etcd; do
        [ -f "$RUN_DIR/$name.pid" ] || continue
        pid=$(cat "$RUN_DIR/$name.pid")
        if kill "$pid" 2>/dev/null; then
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -9 "$pid" 2>/dev/null || true
        fi
    done
    rm -rf "$RUN_DIR"
}

case "${1:-}" in
install) install_etcd; install_consul || true ;;
install-etcd) install_etcd ;;
install-consul) install_consul ;;
start) start ;;
stop) stop ;;
env) [ -f "$RUN_DIR/env" ] && cat "$RUN_DIR/env" ;;
*) echo "usage: $0 install|start|stop|env" >&2; exit 2 ;;
esac
