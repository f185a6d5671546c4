#!/usr/bin/env bash
# Throughput of a hot-standby pair with lease updates against a single server, in one run
# (perfdhcp): our dhcp-server alone on `memory:`, our pair on `memory:` stores keeping each
# other's leases by lease updates (sync-lease-updates: the client is answered once the standby
# has acknowledged its lease), and the same for ISC Kea 2.2: kea-dhcp4 alone on memfile
# (persist false), and a pair with libdhcp_ha.so + libdhcp_lease_cmds.so whose lease updates go
# through each server's kea-ctrl-agent. Target (issue): the pair at least 0.8 times the single
# server's highest clean rate.
#
# Topology (network namespaces made here and always removed): a bridge namespace; server host A
# (vsrv 10.199.0.1/16) and server host B (vsrv 10.199.0.2/16), with a link of their own
# (vpeer 10.200.0.1/24 and .2/24) for heartbeats and lease updates; a client host (vcli
# 10.199.200.1/16) where perfdhcp acts as the relay, broadcasting (both servers of a pair hear
# every packet; the standby leaves them to the primary). A single server runs on host A.
#
# For each variant: the offered rates of RATES in turn, until the first rate with more than
# 0.1% drops, then REFINE rates each halving the gap between the last clean rate and the lowest
# unclean one; each rate on freshly started servers with empty stores (a pair first waits until
# both are in hot-standby); full DORA, perfdhcp -4 -g single -R 50000 -p PERIOD -W 500000; the
# servers' CPU time (utime + stime from /proc) per completed DORA during the run: for a pair
# the sum of both servers (and for Kea both kea-ctrl-agents, which carry the lease updates),
# each process's share shown too; perfdhcp's own CPU per DORA; the rest of the machine's busy
# time during the run (kernel softirq work for the veths and the bridge, anything else that ran)
# and its idle time, in cores (of `nproc`): with both near 0 the machine itself was the limit.
#
# Usage: benches/ha/throughput.sh [--quick] [VARIANT...]      (root)
#   VARIANT: ours-single ours-pair kea-single kea-pair (default: all, in this order)
#   --quick   a smoke run (rates 500 2000, 3 s each)
#   env: RATES="500 1000 ..." REFINE=2 PERIOD=10 LOGDIR=target/ha
#        HEARTBEAT_MS=1000 MAX_RESPONSE_MS=10000 MAX_ACK_MS=10000 MAX_UNACKED=10 (both pairs;
#        long enough that a loaded pair does not fail over during a run)
#        OURS_MAX_IN_FLIGHT= (our servers' [server] max-in-flight; empty: the default, 1 alone
#        on memory:, 256 in a pair with sync-lease-updates)
#        BIN=dir with dhcp-server and dhcp-cli (default: this checkout's release build)
#        RMEM_DEFAULT= (bytes; empty: leave it) net.core.rmem_default for the run, restored on
#        exit: perfdhcp asks for no receive buffer, and with the system's 208 KiB its own socket
#        overflows when a burst of answers comes back, which caps every variant at perfdhcp.
# Output: the markdown report on stdout and in LOGDIR/throughput.md; perfdhcp's output and the
# servers' logs of every rate in LOGDIR/throughput/.
set -euo pipefail
cd "$(dirname "$0")/../.."

RATES=${RATES:-"500 1000 2000 4000 8000 12000 16000 20000 24000 28000 32000"}
REFINE=${REFINE:-2}
PERIOD=${PERIOD:-10}
LOGDIR=${LOGDIR:-target/ha}
HEARTBEAT_MS=${HEARTBEAT_MS:-1000}
MAX_RESPONSE_MS=${MAX_RESPONSE_MS:-10000}
MAX_ACK_MS=${MAX_ACK_MS:-10000}
MAX_UNACKED=${MAX_UNACKED:-10}
OURS_MAX_IN_FLIGHT=${OURS_MAX_IN_FLIGHT:-}
RMEM_DEFAULT=${RMEM_DEFAULT:-}
KEA_HOOKS=${KEA_HOOKS:-/usr/lib/x86_64-linux-gnu/kea/hooks}
TOKEN="ha-bench-token-0123"
ADDR=(10.199.0.1 10.199.0.2)
PEER=(10.200.0.1 10.200.0.2)
RELAY=10.199.200.1

VARIANTS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) RATES="500 2000"; PERIOD=3; REFINE=0 ;;
        ours-single | ours-pair | kea-single | kea-pair) VARIANTS+=("$1") ;;
        *) echo "unknown argument $1 (--quick, ours-single, ours-pair, kea-single, kea-pair)" >&2; exit 2 ;;
    esac
    shift
done
[ ${#VARIANTS[@]} -gt 0 ] || VARIANTS=(ours-single ours-pair kea-single kea-pair)
[ "$(id -u)" = 0 ] || { echo "run as root (network namespaces)" >&2; exit 2; }
for tool in ip perfdhcp kea-dhcp4 kea-ctrl-agent curl jq; do
    command -v "$tool" >/dev/null || {
        echo "missing $tool (apt-get install iproute2 kea-admin kea-dhcp4-server kea-ctrl-agent curl jq)" >&2
        exit 2
    }
done
for lib in libdhcp_ha.so libdhcp_lease_cmds.so; do
    [ -f "$KEA_HOOKS/$lib" ] || { echo "missing $KEA_HOOKS/$lib" >&2; exit 2; }
done
if [ -z "${BIN:-}" ]; then
    cargo build --release -q -p dhcp-examples --bin dhcp-server --bin dhcp-cli
    BIN="$PWD/target/release"
fi
BIN=$(cd "$BIN" && pwd)
mkdir -p "$LOGDIR/throughput"
LOGDIR=$(cd "$LOGDIR" && pwd)
RAW="$LOGDIR/throughput"

TMP=$(mktemp -d)
chmod 755 "$TMP"
NS_BR="htbr$$"
NS=("hta$$" "htb$$")
NS_C="htc$$"
PIDS=()     # every process started here, killed by pid
SERVER=()   # the measured processes of the running variant: "label pid"

stop_pids() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    PIDS=()
    SERVER=()
}

RMEM_WAS=""
cleanup() {
    stop_pids
    if [ -n "$RMEM_WAS" ]; then sysctl -qw net.core.rmem_default="$RMEM_WAS"; fi
    for ns in "${NS[@]}" "$NS_C" "$NS_BR"; do
        if ip netns list | grep -qw "$ns"; then
            for pid in $(ip netns pids "$ns"); do kill -9 "$pid" 2>/dev/null || true; done
            ip netns del "$ns"
        fi
    done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
trap 'echo "$0: failed at line $LINENO" >&2' ERR

if [ -n "$RMEM_DEFAULT" ]; then
    # net.core.rmem_default is the machine's, not a namespace's: restored on exit.
    RMEM_WAS=$(sysctl -n net.core.rmem_default)
    sysctl -qw net.core.rmem_default="$RMEM_DEFAULT"
fi

# ---- the lab -----------------------------------------------------------------------------------
ip netns add "$NS_BR"
ip -n "$NS_BR" link set lo up
ip -n "$NS_BR" link add br0 type bridge
ip -n "$NS_BR" link set br0 up
join() { # $1 namespace, $2 device inside it, $3 bridge port name
    ip link add "$2" netns "$1" type veth peer name "$3" netns "$NS_BR"
    ip -n "$NS_BR" link set "$3" master br0
    ip -n "$NS_BR" link set "$3" up
    ip -n "$1" link set lo up
    ip -n "$1" link set "$2" up
}
for ns in "${NS[@]}" "$NS_C"; do ip netns add "$ns"; done
join "${NS[0]}" vsrv psa
join "${NS[1]}" vsrv psb
join "$NS_C" vcli pc
ip -n "${NS[0]}" addr add "${ADDR[0]}/16" dev vsrv
ip -n "${NS[1]}" addr add "${ADDR[1]}/16" dev vsrv
ip -n "$NS_C" addr add "$RELAY/16" dev vcli
ip link add vpeer netns "${NS[0]}" type veth peer name vpeer netns "${NS[1]}"
for i in 0 1; do
    ip -n "${NS[$i]}" addr add "${PEER[$i]}/24" dev vpeer
    ip -n "${NS[$i]}" link set vpeer up
done

now_us() { local t=$EPOCHREALTIME; echo $((10#${t//[.,]/})); }

# ---- ours ------------------------------------------------------------------------------------
# The relay 10.199.200.1 selects the subnet 10.0.0.0/8; its pool holds 65536 addresses.
ours_config() { # $1 server index, $2 with [ha] (1) or not (0)
    local i=$1 name
    name=$([ "$i" = 0 ] && echo a || echo b)
    cat <<EOF
lease-time = 3600

[[subnets]]
id = 1
subnet = "10.0.0.0/8"
pools = ["10.1.0.0-10.1.255.255"]
options = { routers = ["10.199.0.1"] }
EOF
    if [ "$2" = 1 ]; then
        cat <<EOF

[ha]
this-server = "$name"
mode = "hot-standby"
heartbeat-delay-ms = $HEARTBEAT_MS
max-response-delay-ms = $MAX_RESPONSE_MS
max-ack-delay-ms = $MAX_ACK_MS
max-unacked-clients = $MAX_UNACKED

[[ha.peers]]
name = "a"
url = "http://${PEER[0]}:8067"
role = "primary"

[[ha.peers]]
name = "b"
url = "http://${PEER[1]}:8067"
role = "standby"
EOF
    fi
    cat <<EOF

[server]
listen = ["vsrv"]
store = "memory:"
log-level = "warn"
api-listen = "${PEER[$i]}:8067"
api-token = "$TOKEN"
EOF
    if [ -n "$OURS_MAX_IN_FLIGHT" ]; then echo "max-in-flight = $OURS_MAX_IN_FLIGHT"; fi
}

ours_start() { # $1 server index, $2 with [ha], $3 log file
    local i=$1 name
    name=$([ "$i" = 0 ] && echo a || echo b)
    ours_config "$i" "$2" >"$TMP/ours-$name.toml"
    NO_COLOR=1 ip netns exec "${NS[$i]}" "$BIN/dhcp-server" --config "$TMP/ours-$name.toml" >"$3" 2>&1 &
    PIDS+=($!)
    SERVER+=("ours-$name $!")
}

ours_state() { # $1 server index: its HA state
    ip netns exec "${NS[$1]}" "$BIN/dhcp-cli" --url "http://${PEER[$1]}:8067" --token "$TOKEN" --json show ha \
        2>/dev/null | jq -r '.state // empty' 2>/dev/null || true
}

# ---- Kea -------------------------------------------------------------------------------------
kea_config() { # $1 server index, $2 with HA (1) or not (0)
    local i=$1 name hooks=""
    name=$([ "$i" = 0 ] && echo a || echo b)
    if [ "$2" = 1 ]; then
        hooks=$(cat <<EOF
    "hooks-libraries": [
      { "library": "$KEA_HOOKS/libdhcp_lease_cmds.so" },
      {
        "library": "$KEA_HOOKS/libdhcp_ha.so",
        "parameters": {
          "high-availability": [ {
            "this-server-name": "$name",
            "mode": "hot-standby",
            "heartbeat-delay": $HEARTBEAT_MS,
            "max-response-delay": $MAX_RESPONSE_MS,
            "max-ack-delay": $MAX_ACK_MS,
            "max-unacked-clients": $MAX_UNACKED,
            "peers": [
              { "name": "a", "url": "http://${PEER[0]}:8000/", "role": "primary", "auto-failover": true },
              { "name": "b", "url": "http://${PEER[1]}:8000/", "role": "standby", "auto-failover": true }
            ]
          } ]
        }
      }
    ],
EOF
)
    fi
    cat <<EOF
{
  "Dhcp4": {
    "interfaces-config": { "interfaces": [ "vsrv" ], "dhcp-socket-type": "raw" },
    "control-socket": { "socket-type": "unix", "socket-name": "$TMP/kea-$name.sock" },
    "lease-database": { "type": "memfile", "persist": false, "lfc-interval": 0 },
    "valid-lifetime": 3600,
    "subnet4": [
      {
        "id": 1,
        "subnet": "10.0.0.0/8",
        "pools": [ { "pool": "10.1.0.0 - 10.1.255.255" } ],
        "option-data": [ { "name": "routers", "data": "10.199.0.1" } ]
      }
    ],
$hooks
    "loggers": [ {
      "name": "kea-dhcp4",
      "output_options": [ { "output": "$TMP/kea-$name.log" } ],
      "severity": "WARN"
    } ]
  }
}
EOF
}

kea_agent_config() { # $1 server index
    local i=$1 name
    name=$([ "$i" = 0 ] && echo a || echo b)
    cat <<EOF
{
  "Control-agent": {
    "http-host": "${PEER[$i]}",
    "http-port": 8000,
    "control-sockets": { "dhcp4": { "socket-type": "unix", "socket-name": "$TMP/kea-$name.sock" } },
    "loggers": [ {
      "name": "kea-ctrl-agent",
      "output_options": [ { "output": "$TMP/agent-$name.log" } ],
      "severity": "WARN"
    } ]
  }
}
EOF
}

kea_start() { # $1 server index, $2 with HA, $3 log file
    local i=$1 name
    name=$([ "$i" = 0 ] && echo a || echo b)
    mkdir -p "$TMP/run-$name"
    rm -f "$TMP/kea-$name.log" "$TMP/agent-$name.log"
    kea_config "$i" "$2" >"$TMP/kea-$name.json"
    if [ ! -f "$TMP/kea-$name-$2.checked" ]; then
        ip netns exec "${NS[$i]}" kea-dhcp4 -t "$TMP/kea-$name.json" >"$TMP/kea-$name.check" 2>&1 || {
            echo "kea-dhcp4 refused its config:" >&2; cat "$TMP/kea-$name.check" >&2; exit 1
        }
        touch "$TMP/kea-$name-$2.checked"
    fi
    if [ "$2" = 1 ]; then
        kea_agent_config "$i" >"$TMP/agent-$name.json"
        KEA_PIDFILE_DIR="$TMP/run-$name" KEA_LOCKFILE_DIR="$TMP/run-$name" \
            ip netns exec "${NS[$i]}" kea-ctrl-agent -c "$TMP/agent-$name.json" >"$3.agent" 2>&1 &
        PIDS+=($!)
        SERVER+=("kea-ctrl-agent-$name $!")
    fi
    KEA_PIDFILE_DIR="$TMP/run-$name" KEA_LOCKFILE_DIR="$TMP/run-$name" \
        ip netns exec "${NS[$i]}" kea-dhcp4 -c "$TMP/kea-$name.json" >"$3" 2>&1 &
    PIDS+=($!)
    SERVER+=("kea-dhcp4-$name $!")
}

kea_state() { # $1 server index: its HA state, asked through its agent
    ip netns exec "${NS[$1]}" curl -s -m 2 -X POST -H "Content-Type: application/json" \
        -d '{ "command": "ha-heartbeat", "service": [ "dhcp4" ] }' "http://${PEER[$1]}:8000/" 2>/dev/null |
        jq -r '.[0].arguments.state // empty' 2>/dev/null || true
}

# ---- one rate --------------------------------------------------------------------------------
start_variant() { # $1 variant, $2 log prefix
    local v=$1 impl=${1%%-*} ha=0
    [ "${v#*-}" = pair ] && ha=1
    "${impl}_start" 0 $ha "$2-a.log"
    if [ $ha = 1 ]; then
        "${impl}_start" 1 $ha "$2-b.log"
        local deadline=$(($(now_us) + 60000000)) sa="" sb=""
        while [ "$(now_us)" -lt "$deadline" ]; do
            sa=$("${impl}_state" 0)
            sb=$("${impl}_state" 1)
            [ "$sa" = hot-standby ] && [ "$sb" = hot-standby ] && break
            sleep 0.2
        done
        if [ "$sa" != hot-standby ] || [ "$sb" != hot-standby ]; then
            echo "$v: the pair never reached hot-standby (a=$sa b=$sb); logs in $RAW/$(basename "$2")-*" >&2
            FAILED="the pair never reached hot-standby (a=${sa:-?} b=${sb:-?})"
            return 1
        fi
    fi
    # Serving: a few exchanges through the relay (as compare.sh does).
    for _ in $(seq 1 50); do
        if ip netns exec "$NS_C" perfdhcp -4 -g single -l vcli -r 10 -n 5 -W 500000 \
            -b mac=02:ee:00:00:00:00 >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.2
    done
    echo "$v never answered; logs in $RAW/$(basename "$2")-*" >&2
    FAILED="never answered perfdhcp"
    return 1
}

keep_kea_logs() { # $1 log prefix: Kea's own log files of this rate, beside the others
    local f
    for f in "$TMP"/kea-?.log "$TMP"/agent-?.log; do
        if [ -f "$f" ]; then mv "$f" "$1-$(basename "$f")"; fi
    done
}

cpu_ticks() { # utime + stime of a pid, in clock ticks
    awk '{ print $14 + $15 }' "/proc/$1/stat"
}

# perfdhcp at rate $1, its output in $2 (and its own CPU time, "user sys" in seconds, in
# $2.cpu), in the background so that a signal ends the script at once; then
# "completed_rate drop_percent acks_received" in $2.sum.
perf() {
    local TIMEFORMAT="%U %S"
    { time ip netns exec "$NS_C" perfdhcp -4 -g single -l vcli -R 50000 -p "$PERIOD" -W 500000 -r "$1" \
        >"$2" 2>&1; } 2>"$2.cpu" &
    wait $! || true
    awk '
        /^Rate:/ { rate = $2 }
        /^sent packets:/ { sent += $3 }
        /^received packets:/ { received[++n] = $3 }
        /^drops:/ { drops += $2 }
        END {
            if (sent == 0) { print "0 100 0"; exit }
            printf "%.0f %.3f %d\n", rate, 100 * drops / sent, received[2]
        }' "$2" >"$2.sum"
}

# The whole machine's busy and total CPU time so far (all cores), in clock ticks: "busy total".
machine_ticks() {
    awk '$1 == "cpu" { total = 0; for (i = 2; i <= 9; i++) total += $i; print total - $5 - $6, total }' /proc/stat
}

TICKS=$(getconf CLK_TCK)
us_per() { awk -v t="$1" -v hz="$TICKS" -v n="$2" 'BEGIN { printf "%.1f", n ? t / hz * 1e6 / n : 0 }'; }
# UDP datagrams dropped so far because a socket's receive buffer was full, in namespace $1.
rcvbuf_errors() {
    ip netns exec "$1" awk '$1 == "Udp:" { if (!n++) { for (i = 2; i <= NF; i++) if ($i == "RcvbufErrors") f = i } else print $f }' /proc/net/snmp
}

declare -A CLEAN CPU_US COMPLETED
# One rate of one variant on fresh servers: a row of TABLE; CLEAN and CPU_US when it is clean.
# Returns 0 when clean, 1 when it dropped more than 0.1%, 2 when the servers did not start.
run_rate() { # $1 variant, $2 rate
    local variant=$1 rate=$2 prefix="$RAW/$1-$2" entry label pid t total=0 parts="" states="-"
    local impl=${1%%-*}
    FAILED=""
    if ! start_variant "$variant" "$prefix"; then
        stop_pids
        keep_kea_logs "$prefix"
        TABLE+="| $rate | failed: $FAILED | | | | | | | | |\n"
        return 2
    fi
    local -A before=()
    for entry in "${SERVER[@]}"; do
        read -r label pid <<<"$entry"
        before[$label]=$(cpu_ticks "$pid")
    done
    local busy0 total0 busy1 total1 completed drops acks
    local rb_a0 rb_c0
    rb_a0=$(rcvbuf_errors "${NS[0]}")
    rb_c0=$(rcvbuf_errors "$NS_C")
    read -r busy0 total0 < <(machine_ticks)
    perf "$rate" "$prefix-perfdhcp.txt"
    read -r completed drops acks <"$prefix-perfdhcp.txt.sum"
    read -r busy1 total1 < <(machine_ticks)
    local rb_a=$(($(rcvbuf_errors "${NS[0]}") - rb_a0)) rb_c=$(($(rcvbuf_errors "$NS_C") - rb_c0))
    for entry in "${SERVER[@]}"; do
        read -r label pid <<<"$entry"
        t=$(($(cpu_ticks "$pid") - before[$label]))
        total=$((total + t))
        parts+="$label $(us_per "$t" "$acks") µs, "
    done
    if [ "${variant#*-}" = pair ]; then states="a=$("${impl}_state" 0) b=$("${impl}_state" 1)"; fi
    stop_pids
    keep_kea_logs "$prefix"
    local cpu perf_ticks perf_cpu other idle
    cpu=$(us_per "$total" "$acks")
    perf_ticks=$(awk -v hz="$TICKS" '{ printf "%.0f", ($1 + $2) * hz }' "$prefix-perfdhcp.txt.cpu")
    perf_cpu=$(us_per "$perf_ticks" "$acks")
    # The rest of the machine's busy time while perfdhcp ran (kernel softirq work for the veths
    # and the bridge, anything else running), and its idle time, in cores.
    other=$(awk -v b=$((busy1 - busy0 - total - perf_ticks)) -v t=$((total1 - total0)) -v n="$(nproc)" \
        'BEGIN { printf "%.2f", t ? b / t * n : 0 }')
    idle=$(awk -v b=$((busy1 - busy0)) -v t=$((total1 - total0)) -v n="$(nproc)" \
        'BEGIN { printf "%.2f", t ? (1 - b / t) * n : 0 }')
    TABLE+="| $rate | $completed | $drops% | $cpu µs | ${parts%, } | $perf_cpu µs | $other | $idle | $rb_a / $rb_c | $states |\n"
    echo "$variant at $rate/s: completed $completed/s, drops $drops%, $cpu µs CPU per DORA (${parts%, }), perfdhcp $perf_cpu µs, other $other cores, idle $idle cores, full receive buffers: server $rb_a, perfdhcp $rb_c; $states" >&2
    # Clean: at most 0.1% drops, and perfdhcp kept up (it falls behind the offered rate, without
    # drops, when the machine has no CPU left for it).
    if awk -v d="$drops" -v c="$completed" -v r="$rate" 'BEGIN { exit !(d <= 0.1 && c >= 0.9 * r) }'; then
        if [ "$rate" -gt "${CLEAN[$variant]}" ]; then
            CLEAN[$variant]=$rate
            CPU_US[$variant]=$cpu
            COMPLETED[$variant]=$completed
        fi
        return 0
    fi
    return 1
}

report="Offered rates $RATES, climbing until drops exceed 0.1% or less than 90% completes, then $REFINE halvings of the gap \
between the last clean rate and the first unclean one; ${PERIOD} s each, \
perfdhcp -4 -g single -R 50000 -W 500000 on the client host as a relay (10.199.200.1, broadcast), \
fresh servers with empty memory stores per rate. Pairs: hot-standby, heartbeat-delay $HEARTBEAT_MS ms, \
max-response-delay $MAX_RESPONSE_MS ms, lease updates over their own veth link; ours with \
sync-lease-updates (default), Kea with its default (the primary answers once the standby acknowledged). \
Logging at WARN. net.core.rmem_default ${RMEM_DEFAULT:-as the system has it ($(sysctl -n net.core.rmem_default))}. $(nproc) cores, everything on this one machine. CPU per DORA: utime + stime \
from /proc over the run, divided by the ACKs perfdhcp received. Full receive buffers: UDP datagrams \
dropped by a full socket receive buffer during the run (/proc/net/snmp RcvbufErrors) in server A's \
namespace / in perfdhcp's.\n"
for variant in "${VARIANTS[@]}"; do
    TABLE="| offered/s | completed/s | drops | servers' CPU per DORA (sum) | per process | perfdhcp's CPU per DORA | other busy, cores | idle, cores | full receive buffers, server / perfdhcp | HA states after |\n|---|---|---|---|---|---|---|---|---|---|\n"
    CLEAN[$variant]=0
    CPU_US[$variant]="n/a"
    COMPLETED[$variant]="n/a"
    clean=0
    unclean=""
    for rate in $RATES; do
        outcome=0
        run_rate "$variant" "$rate" || outcome=$?
        if [ $outcome = 0 ]; then clean=$rate; else unclean=$rate; break; fi
    done
    # Closer to the limit: halve the gap between the last clean rate and the first unclean one.
    if [ "${outcome:-0}" = 1 ] && [ "$clean" -gt 0 ]; then
        for _ in $(seq 1 "$REFINE"); do
            mid=$(((clean + unclean) / 2 / 250 * 250))
            [ "$mid" -gt "$clean" ] && [ "$mid" -lt "$unclean" ] || break
            outcome=0
            run_rate "$variant" "$mid" || outcome=$?
            if [ $outcome = 0 ]; then clean=$mid; elif [ $outcome = 1 ]; then unclean=$mid; else break; fi
        done
    fi
    report+="\n### $variant\n\n$TABLE"
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0 && a > 0) printf "%.2f", a / b; else print "n/a" }'; }
report+="\n### Summary\n\n| variant | highest clean rate, DORA/s offered | completed/s there | pair / single (completed) | servers' CPU per DORA there |\n|---|---|---|---|---|\n"
for variant in "${VARIANTS[@]}"; do
    impl=${variant%%-*}
    r="-"
    if [ "${variant#*-}" = pair ]; then r=$(ratio "${COMPLETED[$variant]}" "${COMPLETED[$impl-single]:-0}"); fi
    report+="| $variant | ${CLEAN[$variant]} | ${COMPLETED[$variant]} | $r | ${CPU_US[$variant]} µs |\n"
done
printf "%b" "$report"
printf "%b" "$report" >"$LOGDIR/throughput.md"
