#!/usr/bin/env bash
# Failover time of a hot-standby pair: our dhcp-server pair on a shared Redis against ISC Kea's
# HA hook (libdhcp_ha.so with libdhcp_lease_cmds.so, peers talking through kea-ctrl-agent), with
# the same failure detection settings, alternately in this run (issue 10).
#
# Topology (network namespaces made here and always removed): a bridge namespace; server A
# (10.199.0.1/16, the primary) and server B (10.199.0.2/16, the standby) each in its own
# namespace on `vsrv`; a client namespace on `vcli` with no address (the probe broadcasts).
#
# One measurement, the same for both, each on freshly started processes (and a fresh store):
#   1. start the pair and wait until both servers report hot-standby;
#   2. after two heartbeat-delays and a random part of a third (so that the kill falls anywhere
#      in the heartbeat cycle), take a lease from the primary as a client (dhcp-probe --keep)
#      and check its server-id;
#   3. kill -9 the primary's DHCP server (for Kea: kea-dhcp4 alone, its control agent stays up,
#      so the standby's heartbeats get an error answer at once, as ours get a refused
#      connection; KEA_KILL=both kills the agent too) and note the time;
#   4. probe again and again as a new client (a new MAC each time, PROBE_TIMEOUT per reply, no
#      --keep) until a probe gets a lease whose server-id is the standby's; the result is the
#      time from the kill to the end of that probe, and the number of unanswered probes before.
#   The detection time, for the reading of the result: when the standby logged its move to
#   partner-down (both log it with a millisecond timestamp), from the kill.
# ROUNDS rounds, each round runs both, the order alternating between rounds.
#
# Usage: benches/ha/failover.sh [ours|kea ...]       (root; default: both)
#   env: ROUNDS=3 HEARTBEAT_MS=1000 MAX_RESPONSE_MS=3000 MAX_ACK_MS=1000 MAX_UNACKED=0
#        PROBE_TIMEOUT=1 GIVE_UP_S=60 LOGDIR=target/ha KEA_KILL=dhcp4|both
#        BIN=dir with dhcp-server, dhcp-cli and dhcp-probe (default: this checkout's release
#        build, built here)
# Output: a markdown table on stdout and in LOGDIR/failover.md; raw logs and configs of every
# round in LOGDIR/ROUND-VARIANT/.
set -euo pipefail
cd "$(dirname "$0")/../.."

ROUNDS=${ROUNDS:-3}
HEARTBEAT_MS=${HEARTBEAT_MS:-1000}
MAX_RESPONSE_MS=${MAX_RESPONSE_MS:-3000}
MAX_ACK_MS=${MAX_ACK_MS:-1000}
MAX_UNACKED=${MAX_UNACKED:-0}
PROBE_TIMEOUT=${PROBE_TIMEOUT:-1}
GIVE_UP_S=${GIVE_UP_S:-60}
LOGDIR=${LOGDIR:-target/ha}
KEA_KILL=${KEA_KILL:-dhcp4}
KEA_HOOKS=${KEA_HOOKS:-/usr/lib/x86_64-linux-gnu/kea/hooks}
TOKEN="ha-bench-token-0123"
ADDR_A=10.199.0.1
ADDR_B=10.199.0.2

VARIANTS=()
for arg in "$@"; do
    case "$arg" in
        ours | kea) VARIANTS+=("$arg") ;;
        *) echo "unknown argument $arg (ours, kea)" >&2; exit 2 ;;
    esac
done
[ ${#VARIANTS[@]} -gt 0 ] || VARIANTS=(ours kea)
[ "$(id -u)" = 0 ] || { echo "run as root (network namespaces)" >&2; exit 2; }
for tool in ip kea-dhcp4 kea-ctrl-agent redis-server curl jq; do
    command -v "$tool" >/dev/null || {
        echo "missing $tool (apt-get install iproute2 kea-dhcp4-server kea-ctrl-agent redis-server curl jq)" >&2
        exit 2
    }
done
for lib in libdhcp_ha.so libdhcp_lease_cmds.so; do
    [ -f "$KEA_HOOKS/$lib" ] || { echo "missing $KEA_HOOKS/$lib" >&2; exit 2; }
done
if [ -z "${BIN:-}" ]; then
    cargo build --release -q -p dhcp-examples --bin dhcp-server --bin dhcp-cli --bin dhcp-probe
    BIN="$PWD/target/release"
fi
BIN=$(cd "$BIN" && pwd)
mkdir -p "$LOGDIR"
LOGDIR=$(cd "$LOGDIR" && pwd)

TMP=$(mktemp -d)
chmod 755 "$TMP"
NS_BR="habr$$"
NS_A="haa$$"
NS_B="hab$$"
NS_C="hac$$"
PIDS=()

stop_pids() {
    for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    PIDS=()
}

cleanup() {
    stop_pids
    for ns in "$NS_A" "$NS_B" "$NS_C" "$NS_BR"; do
        if ip netns list | grep -qw "$ns"; then
            for pid in $(ip netns pids "$ns"); do kill -9 "$pid" 2>/dev/null || true; done
            ip netns del "$ns"
        fi
    done
    rm -rf "$TMP"
}
trap cleanup EXIT INT TERM
trap 'echo "$0: failed at line $LINENO" >&2' ERR

# The lab: a bridge, two server hosts and a client host on it.
ip netns add "$NS_BR"
ip -n "$NS_BR" link add br0 type bridge
ip -n "$NS_BR" link set br0 up
join() { # $1 namespace, $2 device inside it, $3 bridge port name
    ip link add "$2" netns "$1" type veth peer name "$3" netns "$NS_BR"
    ip -n "$NS_BR" link set "$3" master br0
    ip -n "$NS_BR" link set "$3" up
    ip -n "$1" link set lo up
    ip -n "$1" link set "$2" up
}
for ns in "$NS_A" "$NS_B" "$NS_C"; do ip netns add "$ns"; done
join "$NS_A" vsrv psa
join "$NS_B" vsrv psb
join "$NS_C" vcli pc
ip -n "$NS_A" addr add "$ADDR_A/16" dev vsrv
ip -n "$NS_B" addr add "$ADDR_B/16" dev vsrv

now_us() { local t=$EPOCHREALTIME; echo $((10#${t//[.,]/})); }

# ---- ours: two dhcp-server processes on one private Redis ----------------------------------

ours_config() { # $1 this server (a|b), $2 its address, $3 store URL
    cat <<EOF
lease-time = 600

[[subnets]]
id = 1
subnet = "10.199.0.0/16"
pools = ["10.199.1.0-10.199.7.255"]

[ha]
this-server = "$1"
mode = "hot-standby"
heartbeat-delay-ms = $HEARTBEAT_MS
max-response-delay-ms = $MAX_RESPONSE_MS
max-ack-delay-ms = $MAX_ACK_MS
max-unacked-clients = $MAX_UNACKED

[[ha.peers]]
name = "a"
url = "http://$ADDR_A:8067"
role = "primary"

[[ha.peers]]
name = "b"
url = "http://$ADDR_B:8067"
role = "standby"

[server]
listen = ["vsrv"]
log-level = "info"
store = "$3"
api-listen = "$2:8067"
api-token = "$TOKEN"
EOF
}

ours_start() { # $1 run dir
    local dir=$1
    redis-server --port 0 --unixsocket "$dir/redis.sock" --unixsocketperm 777 --save "" --appendonly no \
        >"$dir/redis.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 1 50); do [ -S "$dir/redis.sock" ] && break; sleep 0.1; done
    [ -S "$dir/redis.sock" ] || { echo "redis did not start" >&2; cat "$dir/redis.log" >&2; exit 1; }
    local store="redis+unix://$dir/redis.sock?prefix=ha:"
    ours_config a "$ADDR_A" "$store" >"$dir/a.toml"
    ours_config b "$ADDR_B" "$store" >"$dir/b.toml"
    NO_COLOR=1 ip netns exec "$NS_A" "$BIN/dhcp-server" --config "$dir/a.toml" >"$dir/a.log" 2>&1 &
    PRIMARY_PID=$!
    PIDS+=($!)
    NO_COLOR=1 ip netns exec "$NS_B" "$BIN/dhcp-server" --config "$dir/b.toml" >"$dir/b.log" 2>&1 &
    PIDS+=($!)
}

ours_state() { # $1 namespace, $2 address: that server's HA state
    ip netns exec "$1" "$BIN/dhcp-cli" --url "http://$2:8067" --token "$TOKEN" --json show ha 2>/dev/null |
        jq -r '.state // empty' 2>/dev/null || true
}

# ---- Kea: two kea-dhcp4 with the HA hook, each with its kea-ctrl-agent ---------------------

kea_config() { # $1 this server (a|b), $2 its address, $3 run dir
    cat <<EOF
{
  "Dhcp4": {
    "interfaces-config": { "interfaces": [ "vsrv" ], "dhcp-socket-type": "raw" },
    "control-socket": { "socket-type": "unix", "socket-name": "$3/kea-$1.sock" },
    "lease-database": { "type": "memfile", "persist": false, "lfc-interval": 0 },
    "valid-lifetime": 600,
    "subnet4": [
      { "id": 1, "subnet": "10.199.0.0/16", "pools": [ { "pool": "10.199.1.0 - 10.199.7.255" } ] }
    ],
    "hooks-libraries": [
      { "library": "$KEA_HOOKS/libdhcp_lease_cmds.so" },
      {
        "library": "$KEA_HOOKS/libdhcp_ha.so",
        "parameters": {
          "high-availability": [ {
            "this-server-name": "$1",
            "mode": "hot-standby",
            "heartbeat-delay": $HEARTBEAT_MS,
            "max-response-delay": $MAX_RESPONSE_MS,
            "max-ack-delay": $MAX_ACK_MS,
            "max-unacked-clients": $MAX_UNACKED,
            "peers": [
              { "name": "a", "url": "http://$ADDR_A:8000/", "role": "primary", "auto-failover": true },
              { "name": "b", "url": "http://$ADDR_B:8000/", "role": "standby", "auto-failover": true }
            ]
          } ]
        }
      }
    ],
    "loggers": [ {
      "name": "kea-dhcp4",
      "output_options": [ { "output": "$3/kea-$1.log" } ],
      "severity": "INFO"
    } ]
  }
}
EOF
}

kea_agent_config() { # $1 this server, $2 its address, $3 run dir
    cat <<EOF
{
  "Control-agent": {
    "http-host": "$2",
    "http-port": 8000,
    "control-sockets": { "dhcp4": { "socket-type": "unix", "socket-name": "$3/kea-$1.sock" } },
    "loggers": [ {
      "name": "kea-ctrl-agent",
      "output_options": [ { "output": "$3/agent-$1.log" } ],
      "severity": "INFO"
    } ]
  }
}
EOF
}

kea_start() { # $1 run dir
    local dir=$1 side ns addr
    for side in a b; do
        if [ $side = a ]; then ns=$NS_A addr=$ADDR_A; else ns=$NS_B addr=$ADDR_B; fi
        mkdir -p "$dir/run-$side"
        kea_config $side "$addr" "$dir" >"$dir/kea-$side.json"
        kea_agent_config $side "$addr" "$dir" >"$dir/agent-$side.json"
        ip netns exec "$ns" kea-dhcp4 -t "$dir/kea-$side.json" >"$dir/kea-$side.check" 2>&1 || {
            echo "kea-dhcp4 refused its config:" >&2; cat "$dir/kea-$side.check" >&2; exit 1
        }
        KEA_PIDFILE_DIR="$dir/run-$side" KEA_LOCKFILE_DIR="$dir/run-$side" \
            ip netns exec "$ns" kea-ctrl-agent -c "$dir/agent-$side.json" >"$dir/agent-$side.out" 2>&1 &
        PIDS+=($!)
        if [ $side = a ]; then PRIMARY_AGENT_PID=$!; fi
        KEA_PIDFILE_DIR="$dir/run-$side" KEA_LOCKFILE_DIR="$dir/run-$side" \
            ip netns exec "$ns" kea-dhcp4 -c "$dir/kea-$side.json" >"$dir/kea-$side.out" 2>&1 &
        PIDS+=($!)
        if [ $side = a ]; then PRIMARY_PID=$!; fi
    done
}

kea_state() { # $1 namespace, $2 address: that server's HA state, asked through its agent
    ip netns exec "$1" curl -s -m 2 -X POST -H "Content-Type: application/json" \
        -d '{ "command": "ha-heartbeat", "service": [ "dhcp4" ] }' "http://$2:8000/" 2>/dev/null |
        jq -r '.[0].arguments.state // empty' 2>/dev/null || true
}

# ---- the measurement -------------------------------------------------------------------------

state_of() { # $1 variant, $2 a|b
    if [ "$2" = a ]; then "${1}_state" "$NS_A" "$ADDR_A"; else "${1}_state" "$NS_B" "$ADDR_B"; fi
}

probe() { # $1 MAC, $2 output file, then extra probe arguments
    local mac=$1 out=$2
    shift 2
    ip netns exec "$NS_C" "$BIN/dhcp-probe" --interface vcli --timeout "$PROBE_TIMEOUT" --mac "$mac" "$@" >"$out" 2>&1
}

# When the standby logged its move to partner-down, in µs since the epoch: the first such line
# at or after $3 (the kill, µs). Ours logs `2026-11-29T12:00:56.283027Z  WARN HA: ...
# state="partner-down"` (UTC), Kea `2026-11-29 12:00:56.283 INFO ... HA_STATE_TRANSITION server
# transitions from HOT-STANDBY to PARTNER-DOWN state` (local time; date(1) reads both).
partner_down_logged() { # $1 variant, $2 the standby's log, $3 kill time (µs)
    local stamp ns
    if [ "$1" = ours ]; then
        grep 'state="partner-down"' "$2" | awk '{ print $1 }'
    else
        grep 'HA_STATE_TRANSITION.* to PARTNER-DOWN' "$2" | awk '{ print $1 " " $2 }'
    fi | while read -r stamp; do
        ns=$(date -d "$stamp" +%s%N 2>/dev/null) || continue
        if [ $((ns / 1000)) -ge "$3" ]; then
            echo $((ns / 1000))
            break
        fi
    done
}

# One round of one variant; sets RESULT_MS, UNANSWERED, DETECT_MS (empty when it failed).
measure() { # $1 variant, $2 round
    local variant=$1 round=$2 dir="$LOGDIR/$2-$1"
    local vbyte; vbyte=$([ "$variant" = ours ] && echo 01 || echo 02)
    local rbyte; rbyte=$(printf %02x "$round")
    rm -rf "$dir"
    mkdir -p "$dir"
    RESULT_MS="" UNANSWERED="" DETECT_MS=""
    # Kea's files (sockets, pid files) live in a private directory whose path stays short.
    local run="$TMP/$round-$variant"
    mkdir -p "$run"
    "${variant}_start" "$run"

    # 1. both in hot-standby
    local deadline=$(($(now_us) + 60000000)) sa="" sb=""
    while [ "$(now_us)" -lt "$deadline" ]; do
        sa=$(state_of "$variant" a)
        sb=$(state_of "$variant" b)
        [ "$sa" = hot-standby ] && [ "$sb" = hot-standby ] && break
        sleep 0.2
    done
    echo "states before the kill: a=$sa b=$sb" >"$dir/measure.log"
    if [ "$sa" != hot-standby ] || [ "$sb" != hot-standby ]; then
        echo "$variant round $round: the pair never reached hot-standby (a=$sa b=$sb); see $dir" >&2
        cp -r "$run"/. "$dir"/ 2>/dev/null || true
        stop_pids
        return
    fi
    # A few heartbeats, then a random part of one more: the kill falls anywhere in the heartbeat
    # cycle (detection depends on where; without this the kill would follow the moment the
    # pair was seen in hot-standby by a fixed time, always at one phase of the cycle).
    local pause_ms=$((2 * HEARTBEAT_MS + RANDOM % HEARTBEAT_MS))
    echo "pause before the lease and the kill: $pause_ms ms" >>"$dir/measure.log"
    sleep "$(awk -v ms="$pause_ms" 'BEGIN { printf "%.3f", ms / 1000 }')"

    # 2. a lease from the primary
    if ! probe "02:ee:$rbyte:$vbyte:00:00" "$dir/probe-primary.txt" --keep ||
        ! grep -qx "server-id $ADDR_A" "$dir/probe-primary.txt"; then
        echo "$variant round $round: no lease from the primary: $(cat "$dir/probe-primary.txt")" >&2
        cp -r "$run"/. "$dir"/ 2>/dev/null || true
        stop_pids
        return
    fi

    # 3. kill the primary
    local killed; killed=$(now_us)
    kill -9 "$PRIMARY_PID"
    if [ "$variant" = kea ] && [ "$KEA_KILL" = both ]; then kill -9 "$PRIMARY_AGENT_PID"; fi
    wait "$PRIMARY_PID" 2>/dev/null || true
    echo "killed the primary (pid $PRIMARY_PID) at $killed µs" >>"$dir/measure.log"

    # 4. probe as new clients until the standby answers
    local n=0 start end
    while :; do
        n=$((n + 1))
        start=$(now_us)
        if probe "02:ee:$rbyte:$vbyte:01:$(printf %02x $((n % 256)))" "$dir/probe-$n.txt" &&
            grep -qx "server-id $ADDR_B" "$dir/probe-$n.txt"; then
            end=$(now_us)
            echo "probe $n: $(((start - killed) / 1000)) ms to $(((end - killed) / 1000)) ms: lease from the standby" >>"$dir/measure.log"
            RESULT_MS=$(((end - killed) / 1000))
            UNANSWERED=$((n - 1))
            break
        fi
        end=$(now_us)
        echo "probe $n: $(((start - killed) / 1000)) ms to $(((end - killed) / 1000)) ms: $(tr '\n' ' ' <"$dir/probe-$n.txt")" >>"$dir/measure.log"
        if [ $((end - killed)) -gt $((GIVE_UP_S * 1000000)) ]; then
            echo "$variant round $round: no lease from the standby within $GIVE_UP_S s; see $dir" >&2
            break
        fi
    done
    stop_pids
    cp -r "$run"/. "$dir"/ 2>/dev/null || true
    local standby_log="$dir/b.log" logged
    [ "$variant" = ours ] || standby_log="$dir/kea-b.log"
    logged=$(partner_down_logged "$variant" "$standby_log" "$killed") || true
    if [ -n "$logged" ]; then
        DETECT_MS=$(((logged - killed) / 1000))
        echo "the standby logged partner-down $DETECT_MS ms after the kill" >>"$dir/measure.log"
    fi
    rm -f "$dir"/*.sock
}

secs() { [ -n "$1" ] && awk -v ms="$1" 'BEGIN { printf "%.2f s", ms / 1000 }' || echo "n/a"; }
median() { # numbers as arguments; empty when none
    [ $# -gt 0 ] || return 0
    printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print int((v[NR / 2] + v[NR / 2 + 1]) / 2) }'
}

declare -A RESULTS DETECTS MISSES
rows=""
for round in $(seq 1 "$ROUNDS"); do
    order=("${VARIANTS[@]}")
    if [ $((round % 2)) = 0 ] && [ ${#VARIANTS[@]} = 2 ]; then order=("${VARIANTS[1]}" "${VARIANTS[0]}"); fi
    for variant in "${order[@]}"; do
        measure "$variant" "$round"
        rows+="| $round | $variant | $(secs "$DETECT_MS") | $(secs "$RESULT_MS") | ${UNANSWERED:-n/a} |\n"
        [ -n "$RESULT_MS" ] && RESULTS[$variant]+="$RESULT_MS "
        [ -n "$DETECT_MS" ] && DETECTS[$variant]+="$DETECT_MS "
        [ -n "$UNANSWERED" ] && MISSES[$variant]+="$UNANSWERED "
        echo "round $round $variant: partner-down $(secs "$DETECT_MS"), first standby lease $(secs "$RESULT_MS"), ${UNANSWERED:-n/a} unanswered probes" >&2
    done
done

kea_kill_text="kea-dhcp4 alone (its kea-ctrl-agent stays up)"
[ "$KEA_KILL" = both ] && kea_kill_text="kea-dhcp4 and its kea-ctrl-agent"
report="Hot-standby pair, primary killed with SIGKILL ($kea_kill_text for Kea), \
heartbeat-delay $HEARTBEAT_MS ms, max-response-delay $MAX_RESPONSE_MS ms, max-ack-delay $MAX_ACK_MS ms, \
max-unacked-clients $MAX_UNACKED on both; probes of a new client each, $PROBE_TIMEOUT s per reply \
(resent once halfway), one after the other. Ours on a shared Redis (Unix socket); Kea memfile \
(persist false) with lease updates between the peers through kea-ctrl-agent. Times are from the kill.\n\n"
report+="| round | pair | standby logged partner-down after | first lease from the standby after | unanswered probes before it |\n"
report+="|---|---|---|---|---|\n$rows"
for variant in "${VARIANTS[@]}"; do
    # shellcheck disable=SC2086
    report+="| median | $variant | $(secs "$(median ${DETECTS[$variant]:-})") | $(secs "$(median ${RESULTS[$variant]:-})") | $(median ${MISSES[$variant]:-}) |\n"
done
# The issue's targets: at most Kea's, and no later than the detection time plus one client
# retransmission (here: one probe, PROBE_TIMEOUT).
if [ -n "${RESULTS[ours]:-}" ] && [ -n "${RESULTS[kea]:-}" ]; then
    # shellcheck disable=SC2086
    read -r ours_med kea_med < <(echo "$(median ${RESULTS[ours]}) $(median ${RESULTS[kea]})")
    verdict=$([ "$ours_med" -le "$kea_med" ] && echo "yes" || echo "no")
    report+="\nMedian time to the first lease from the standby: ours $(secs "$ours_med"), Kea $(secs "$kea_med"); ours at most Kea's: $verdict.\n"
fi
for variant in "${VARIANTS[@]}"; do
    [ -n "${RESULTS[$variant]:-}" ] || continue
    # shellcheck disable=SC2086
    worst=$(printf '%s\n' ${RESULTS[$variant]} | sort -n | tail -1)
    past=$((worst - MAX_RESPONSE_MS))
    within=$([ "$past" -le $((PROBE_TIMEOUT * 1000)) ] && echo "within" || echo "more than")
    report+="$variant: the slowest first lease came $(secs "$past") past max-response-delay ($within one probe of $PROBE_TIMEOUT s).\n"
done
printf "%b" "$report"
printf "%b" "$report" >"$LOGDIR/failover.md"
