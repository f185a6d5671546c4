#!/usr/bin/env bash
# Known hosts from Redis (host-source = "store"), with and without the host cache: perfdhcp as
# a relay over 4,096 MACs that each have a `mac:` entry and a group in a private Redis; leases
# in memory, hosts from `host-store`, so every Redis command is a host lookup. For each variant,
# rates climb until drops exceed 0.1%; each rate on a freshly started server (the Redis data
# stays, so the cache starts cold each time). Prints per rate the completed rate, drops, our
# CPU per DORA, redis-server's CPU per DORA and the Redis commands per DORA.
#
# Usage: benches/perfdhcp/hosts.sh   env: RATES="2000 4000 ..." PERIOD=6 THREADS=N
#        OURS=path/to/dhcp-server LOGDIR=target/perfdhcp-hosts
set -euo pipefail
cd "$(dirname "$0")/../.."
. benches/perfdhcp/common.sh

RATES=${RATES:-"2000 4000 8000 12000 16000 24000 32000"}
PERIOD=${PERIOD:-6}
LOGDIR=${LOGDIR:-target/perfdhcp-hosts}
HOSTS=4096
mkdir -p "$LOGDIR"
if [ -z "${OURS:-}" ]; then
    cargo build --release -q -p dhcp-examples --bin dhcp-server
    OURS="$PWD/target/release/dhcp-server"
fi
TMP=$(mktemp -d)
chmod 755 "$TMP"
NS="hosts$$"
SERVER_PID=""
REDIS_PID=""
cleanup() {
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true
    [ -n "$REDIS_PID" ] && kill "$REDIS_PID" 2>/dev/null || true
    if ip netns list | grep -qw "$NS"; then
        for pid in $(ip netns pids "$NS"); do kill -9 "$pid" 2>/dev/null || true; done
        ip netns del "$NS"
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

ip netns add "$NS"
ip -n "$NS" link set lo up
ip -n "$NS" addr add 127.0.0.2/8 dev lo

redis-server --port 0 --unixsocket "$TMP/redis.sock" --unixsocketperm 777 --save "" --appendonly no \
    >"$TMP/redis.log" 2>&1 &
REDIS_PID=$!
for _ in $(seq 1 50); do [ -S "$TMP/redis.sock" ] && break; sleep 0.1; done
rcli() { redis-cli -s "$TMP/redis.sock" "$@"; }
# The hosts: perfdhcp's MACs from its base (offsets in the last two bytes), each with an address
# outside the pool and the group; written in one pipe.
rcli hset group:default lease-time 1h gateway 10.10.0.1 dns 10.10.0.53 domain bench.test. prefix 16 >/dev/null
for n in $(seq 0 $((HOSTS - 1))); do
    printf 'HSET mac:02:00:00:aa:%02x:%02x ip 10.10.%d.%d description host-%d\n' \
        $((n / 256)) $((n % 256)) $((16 + n / 256)) $((n % 256)) "$n"
done | rcli >/dev/null

config() { # $1: host-cache yes|no
    local threads=""
    [ -n "${THREADS:-}" ] && threads="threads = $THREADS"
    cat >"$TMP/ours.toml" <<TOML
lease-time = 3600
host-source = "store"

[server]
listen = ["127.0.0.1"]
store = "memory:"
host-store = "redis+unix://$TMP/redis.sock?host-cache=$1"
log-level = "warn"
$threads

[[subnets]]
id = 1
subnet = "10.10.0.0/16"
pools = ["10.10.200.0-10.10.255.254"]
relay-addresses = ["127.0.0.2"]
TOML
}


for cache in no yes; do
    config "$cache"
    printf '\n### host-cache=%s\n\n| offered/s | completed/s | drops | server CPU per DORA | redis-server CPU per DORA | Redis commands per DORA |\n|---|---|---|---|---|---|\n' "$cache"
    for rate in $RATES; do
        ip netns exec "$NS" "$OURS" --config "$TMP/ours.toml" 2>"$TMP/server.log" &
        SERVER_PID=$!
        for _ in $(seq 1 50); do
            ip netns exec "$NS" perfdhcp -4 -l 127.0.0.2 -r 10 -n 5 -W 500000 -b mac=02:ee:00:00:00:00 127.0.0.1 \
                >/dev/null 2>&1 && break
            sleep 0.2
        done
        rcli config resetstat >/dev/null
        before=$(cpu_ticks "$SERVER_PID"); rbefore=$(cpu_ticks "$REDIS_PID")
        log="$LOGDIR/cache-$cache-$rate.txt"
        ip netns exec "$NS" perfdhcp -4 -l 127.0.0.2 -R "$HOSTS" -b mac=02:00:00:aa:00:00 -p "$PERIOD" -W 500000 \
            -r "$rate" 127.0.0.1 >"$log" 2>&1 || true
        after=$(cpu_ticks "$SERVER_PID"); rafter=$(cpu_ticks "$REDIS_PID")
        commands=$(rcli info stats | awk -F: '/^total_commands_processed/ { print $2 + 0 }')
        kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""
        read -r completed drops acks < <(perfdhcp_totals "$log")
        per_cmd=$(awk -v c="$commands" -v n="$acks" 'BEGIN { printf "%.2f", n ? c / n : 0 }')
        printf '| %s | %s | %s%% | %s µs | %s µs | %s |\n' "$rate" "$completed" "$drops" \
            "$(per_dora $((after - before)) "$acks")" "$(per_dora $((rafter - rbefore)) "$acks")" "$per_cmd"
        awk -v d="$drops" 'BEGIN { exit !(d > 0.1) }' && break
    done
done
