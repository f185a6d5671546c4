#!/usr/bin/env bash
# perfdhcp against our server (examples/config/bench.toml) and against ISC Kea (kea-bench.json,
# the same subnet and pool, memfile with persistence off, logging at WARN), one after the other
# on this machine in this run. For each server:
#   - the highest offered rate (from RATES) completed with at most 0.1% drops, each rate on a
#     freshly started server, full DORA, 50000 distinct clients, PERIOD seconds;
#   - the server's CPU time (utime + stime from /proc) per completed DORA at CPU_RATE offered.
# Each server runs in its own network namespace whose loopback also holds 127.0.0.2, where
# perfdhcp acts as the relay (../../shared/TESTING.md). Raw perfdhcp output goes to LOGDIR.
#
# Usage: benches/perfdhcp/compare.sh [--quick] [--out FILE]
#   --quick   a short smoke run (rates 1000 2000, 3 s each, CPU at 2000)
#   env: RATES="4000 8000 ..." PERIOD=10 CPU_RATE=8000 LOGDIR=target/perfdhcp
set -euo pipefail
cd "$(dirname "$0")/../.."

RATES=${RATES:-"4000 8000 12000 16000 20000 24000 28000 32000"}
PERIOD=${PERIOD:-10}
CPU_RATE=${CPU_RATE:-8000}
LOGDIR=${LOGDIR:-target/perfdhcp}
OUT=""
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) RATES="1000 2000"; PERIOD=3; CPU_RATE=2000 ;;
        --out) OUT="$2"; shift ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done

for tool in perfdhcp kea-dhcp4 ip; do
    command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install kea-admin kea-dhcp4-server iproute2)" >&2; exit 2; }
done
mkdir -p "$LOGDIR"
cargo build --release -q -p dhcp-examples --bin dhcp-server
OURS="$PWD/target/release/dhcp-server"
KEA_CFG="$PWD/benches/perfdhcp/kea-bench.json"
TMP=$(mktemp -d)
NS="perf$$"
SERVER_PID=""

cleanup() {
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true
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

start_server() { # $1: ours | kea
    case "$1" in
        ours) ip netns exec "$NS" "$OURS" --config examples/config/bench.toml 2>"$TMP/server.log" & ;;
        kea) KEA_PIDFILE_DIR="$TMP" KEA_LOCKFILE_DIR="$TMP" ip netns exec "$NS" kea-dhcp4 -c "$KEA_CFG" >"$TMP/server.log" 2>&1 & ;;
    esac
    SERVER_PID=$!
    for _ in $(seq 1 50); do
        if ip netns exec "$NS" perfdhcp -4 -g single -l 127.0.0.2 -r 10 -n 5 -W 500000 -b mac=02:ee:00:00:00:00 127.0.0.1 >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.2
    done
    echo "$1 never answered:" >&2
    cat "$TMP/server.log" >&2
    exit 1
}

stop_server() {
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
}

cpu_ticks() { # utime + stime of a pid, in clock ticks
    awk '{ print $14 + $15 }' "/proc/$1/stat"
}

# Runs perfdhcp at rate $2 against server $1, logging to $LOGDIR/$1-$3.txt; prints
# "completed_rate drop_percent acks_received".
measure() {
    local log="$LOGDIR/$1-$3.txt"
    ip netns exec "$NS" perfdhcp -4 -g single -l 127.0.0.2 -R 50000 -p "$PERIOD" -W 500000 -r "$2" 127.0.0.1 >"$log" 2>&1 || true
    awk '
        /^Rate:/ { rate = $2 }
        /^sent packets:/ { sent += $3 }
        /^received packets:/ { received[++n] = $3 }
        /^drops:/ { drops += $2 }
        END {
            if (sent == 0) { print "0 100 0"; exit }
            printf "%.0f %.3f %d\n", rate, 100 * drops / sent, received[2]
        }' "$log"
}

TICKS=$(getconf CLK_TCK)
declare -A CLEAN CPU_US
report="Offered rates $RATES, ${PERIOD} s each, perfdhcp -4 -g single -R 50000 -W 500000, relay 127.0.0.2.\n"
for server in ours kea; do
    table="| offered/s | completed/s | drops |\n|---|---|---|\n"
    CLEAN[$server]=0
    for rate in $RATES; do
        start_server "$server"
        read -r completed drops _ < <(measure "$server" "$rate" "$rate")
        stop_server
        table+="| $rate | $completed | $drops% |\n"
        if awk -v d="$drops" 'BEGIN { exit !(d <= 0.1) }'; then
            CLEAN[$server]=$rate
        else
            break
        fi
    done
    start_server "$server"
    before=$(cpu_ticks "$SERVER_PID")
    read -r completed drops acks < <(measure "$server" "$CPU_RATE" "cpu")
    after=$(cpu_ticks "$SERVER_PID")
    stop_server
    CPU_US[$server]=$(awk -v t=$((after - before)) -v hz="$TICKS" -v n="$acks" 'BEGIN { printf "%.1f", n ? t / hz * 1e6 / n : 0 }')
    report+="\n### $server\n\n$table\nAt $CPU_RATE offered/s: $completed completed/s, $drops% drops, $((after - before)) ticks of CPU for $acks DORAs: ${CPU_US[$server]} µs per DORA.\n"
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
report+="\n### Summary\n\n| | ours | Kea | ours/Kea |\n|---|---|---|---|\n"
report+="| highest clean rate (≤0.1% drops), DORA/s offered | ${CLEAN[ours]} | ${CLEAN[kea]} | $(ratio "${CLEAN[ours]}" "${CLEAN[kea]}") |\n"
report+="| CPU per DORA at $CPU_RATE/s, µs | ${CPU_US[ours]} | ${CPU_US[kea]} | $(ratio "${CPU_US[ours]}" "${CPU_US[kea]}") |\n"
printf "%b" "$report"
if [ -n "$OUT" ]; then printf "%b" "$report" >"$OUT"; fi
if [ "${CLEAN[ours]}" = 0 ]; then
    echo "our server dropped more than 0.1% even at the lowest rate" >&2
    exit 1
fi
