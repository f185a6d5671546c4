#!/usr/bin/env bash
# How long a restarted server with an empty local store takes to fetch its partner's leases
# before it answers (issue: "syncs 100,000 leases from its partner before answering"): our
# hot-standby pair on `memory:` stores.
#
# Topology (network namespaces made here and always removed): a bridge namespace; server host A
# (vsrv 10.199.0.1/16) and server host B (vsrv 10.199.0.2/16), with a link of their own
# (vpeer 10.200.0.1/24 and .2/24) where their management APIs listen; a client host (vcli
# 10.199.200.1/16) where perfdhcp acts as the relay. Subnet 10.0.0.0/8 (the relay's address
# selects it), pool 10.1.0.0-10.4.255.255: 262,144 addresses, so that the half A hands out alone
# in partner-down (131,072) holds the 100,000 clients.
#
# Each round, on freshly started processes:
#   1. A starts alone as the primary (B's peer entry in its [ha], B not running); once it has
#      gone to partner-down (after max-response-delay), perfdhcp fills it with LEASES bound
#      leases of distinct clients (should perfdhcp repeat a client, or drop an exchange, it runs
#      again for the missing ones until A holds exactly LEASES bound leases by the API's
#      GET /api/v1/leases?state=bound; one run was enough here);
#   2. B starts with an empty store; the time from its start (just before exec) to its log line
#      "HA: synced; serving" (that line's own timestamp) is the result. B's HA state is polled
#      beside it (waiting -> syncing -> hot-standby) into the round's log;
#   3. B's bound leases (address, MAC, client id, expiry) must be A's, one for one.
# ROUNDS rounds.
#
# Usage: benches/ha/sync.sh      (root)
#   env: ROUNDS=3 LEASES=100000 FILL_RATE=5000 LOGDIR=target/ha SYNC_PAGE_SIZE= (B's
#        sync-page-size; empty: the default, 10000) HEARTBEAT_MS=1000 MAX_RESPONSE_MS=3000
#        BIN=dir with dhcp-server and dhcp-cli (default: this checkout's release build)
# Output: a markdown table on stdout and in LOGDIR/sync.md; logs of every round in
# LOGDIR/sync/ROUND/ (A's compressed: it logs every lease it grants).
set -euo pipefail
cd "$(dirname "$0")/../.."

ROUNDS=${ROUNDS:-3}
LEASES=${LEASES:-100000}
FILL_RATE=${FILL_RATE:-5000}
LOGDIR=${LOGDIR:-target/ha}
SYNC_PAGE_SIZE=${SYNC_PAGE_SIZE:-}
HEARTBEAT_MS=${HEARTBEAT_MS:-1000}
MAX_RESPONSE_MS=${MAX_RESPONSE_MS:-3000}
TOKEN="ha-bench-token-0123"
ADDR=(10.199.0.1 10.199.0.2)
PEER=(10.200.0.1 10.200.0.2)
RELAY=10.199.200.1
GIVE_UP_S=120

[ "$(id -u)" = 0 ] || { echo "run as root (network namespaces)" >&2; exit 2; }
for tool in ip perfdhcp curl jq; do
    command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install iproute2 kea-admin curl jq)" >&2; exit 2; }
done
if [ -z "${BIN:-}" ]; then
    cargo build --release -q -p dhcp-examples --bin dhcp-server --bin dhcp-cli
    BIN="$PWD/target/release"
fi
BIN=$(cd "$BIN" && pwd)
mkdir -p "$LOGDIR/sync"
LOGDIR=$(cd "$LOGDIR" && pwd)

TMP=$(mktemp -d)
chmod 755 "$TMP"
NS_BR="hsbr$$"
NS=("hsa$$" "hsb$$")
NS_C="hsc$$"
PIDS=()
PID=("" "")

stop_pids() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    PIDS=()
    PID=("" "")
}

cleanup() {
    stop_pids
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

config() { # $1 server index
    local i=$1 name
    name=$([ "$i" = 0 ] && echo a || echo b)
    cat <<EOF
lease-time = 86400

[[subnets]]
id = 1
subnet = "10.0.0.0/8"
pools = ["10.1.0.0-10.4.255.255"]

[ha]
this-server = "$name"
mode = "hot-standby"
heartbeat-delay-ms = $HEARTBEAT_MS
max-response-delay-ms = $MAX_RESPONSE_MS
max-ack-delay-ms = 1000
max-unacked-clients = 0
EOF
    if [ -n "$SYNC_PAGE_SIZE" ]; then echo "sync-page-size = $SYNC_PAGE_SIZE"; fi
    cat <<EOF

[[ha.peers]]
name = "a"
url = "http://${PEER[0]}:8067"
role = "primary"

[[ha.peers]]
name = "b"
url = "http://${PEER[1]}:8067"
role = "standby"

[server]
listen = ["vsrv"]
store = "memory:"
log-level = "info"
api-listen = "${PEER[$i]}:8067"
api-token = "$TOKEN"
EOF
}

start() { # $1 server index, $2 log file
    local i=$1 name
    name=$([ "$i" = 0 ] && echo a || echo b)
    config "$i" >"$TMP/$name.toml"
    NO_COLOR=1 ip netns exec "${NS[$i]}" "$BIN/dhcp-server" --config "$TMP/$name.toml" >"$2" 2>&1 &
    PIDS+=($!)
    PID[$i]=$!
}

state() { # $1 server index: its HA state
    ip netns exec "${NS[$1]}" "$BIN/dhcp-cli" --url "http://${PEER[$1]}:8067" --token "$TOKEN" --json show ha \
        2>/dev/null | jq -r '.state // empty' 2>/dev/null || true
}

wait_state() { # $1 server index, $2 wanted state, $3 seconds: whether it got there
    local deadline=$(($(now_us) + $3 * 1000000))
    while [ "$(now_us)" -lt "$deadline" ]; do
        [ "$(state "$1")" = "$2" ] && return 0
        sleep 0.1
    done
    return 1
}

# Server $1's bound leases, one "address hw-address client-id deadline" line each, sorted.
bound_leases() {
    ip netns exec "${NS[$1]}" curl -sf -m 60 -H "Authorization: Bearer $TOKEN" \
        "http://${PEER[$1]}:8067/api/v1/leases?state=bound" |
        jq -r '.leases[] | "\(.address) \(.["hw-address"]) \(.["client-id"]) \(.deadline)"' | sort
}

# Microseconds since the epoch of a log line's leading RFC 3339 timestamp.
line_us() { date -d "$(awk '{ print $1 }' <<<"$1")" +%s%6N; }

# ---- the rounds --------------------------------------------------------------------------------
rows=""
times=()
for round in $(seq 1 "$ROUNDS"); do
    dir="$LOGDIR/sync/$round"
    rm -rf "$dir"
    mkdir -p "$dir"

    # 1. A alone, then in partner-down, then filled.
    start 0 "$dir/a.log"
    if ! wait_state 0 partner-down $((MAX_RESPONSE_MS / 1000 + 20)); then
        echo "round $round: A never went to partner-down (state $(state 0)); see $dir/a.log" >&2
        exit 1
    fi
    fill_start=$(now_us)
    have=0
    pass=0
    while [ "$have" -lt "$LEASES" ]; do
        pass=$((pass + 1))
        if [ "$pass" -gt 30 ]; then
            echo "round $round: A holds $have bound leases after 30 perfdhcp runs; see $dir" >&2
            exit 1
        fi
        missing=$((LEASES - have))
        # As many exchanges as leases are missing (never more, so A ends with exactly LEASES),
        # among 16x as many clients (should perfdhcp draw them at random, few repeat); each run
        # from a base MAC of its own.
        n=$missing
        [ "$n" -ge 2 ] || n=2 # perfdhcp miscounts -n 1
        ip netns exec "$NS_C" perfdhcp -4 -g single -l vcli -R $((LEASES * 16)) -n "$n" -r "$FILL_RATE" \
            -W 1000000 -b "mac=02:$(printf %02x "$pass"):00:00:00:00" >"$dir/fill-$pass.txt" 2>&1 &
        wait $! || true # in the background, so that a signal ends the script at once
        have=$(bound_leases 0 | wc -l)
        echo "fill pass $pass: $n exchanges at $FILL_RATE/s, A holds $have bound leases" >>"$dir/round.log"
    done
    fill_s=$(awk -v us=$(($(now_us) - fill_start)) 'BEGIN { printf "%.1f", us / 1e6 }')
    acks_a=$(ip netns exec "${NS[0]}" "$BIN/dhcp-cli" --url "http://${PEER[0]}:8067" --token "$TOKEN" --json show stats |
        jq -r '.["pkt4-ack-sent"]')
    echo "A filled: $have bound leases, $acks_a ACKs sent, $pass perfdhcp runs, $fill_s s" | tee -a "$dir/round.log" >&2

    # 2. B starts empty; until it has synced.
    t0=$(now_us)
    start 1 "$dir/b.log"
    (
        while kill -0 "${PID[1]}" 2>/dev/null; do
            s=$(state 1)
            echo "$((($(now_us) - t0) / 1000)) ms ${s:-?}" >>"$dir/b-states.log"
            [ "$s" = hot-standby ] && break
            sleep 0.2
        done
    ) &
    watcher=$!
    synced=""
    while [ $(($(now_us) - t0)) -lt $((GIVE_UP_S * 1000000)) ]; do
        synced=$(grep -m1 "HA: synced; serving" "$dir/b.log" || true)
        [ -n "$synced" ] && break
        sleep 0.01
    done
    seen=$(now_us)
    wait "$watcher" 2>/dev/null || true
    if [ -z "$synced" ]; then
        echo "round $round: B did not sync within $GIVE_UP_S s; see $dir/b.log" >&2
        rows+="| $round | $have | failed | | | |\n"
        stop_pids
        continue
    fi
    sync_ms=$((($(line_us "$synced") - t0) / 1000))
    fetched=$(grep -m1 "the partner's leases are stored here" "$dir/b.log" || true)
    first=$(head -n1 "$dir/b.log")
    from_first_ms=$((($(line_us "$synced") - $(line_us "$first")) / 1000))
    echo "B: synced $sync_ms ms after its start ($from_first_ms ms after its first log line; seen by polling at $(((seen - t0) / 1000)) ms)" |
        tee -a "$dir/round.log" >&2
    echo "B: $fetched" >>"$dir/round.log"

    # 3. B holds A's leases.
    wait_state 1 hot-standby 10 || true
    sa=$(state 0)
    sb=$(state 1)
    bound_leases 0 >"$dir/a-bound.txt"
    bound_leases 1 >"$dir/b-bound.txt"
    count_a=$(wc -l <"$dir/a-bound.txt")
    count_b=$(wc -l <"$dir/b-bound.txt")
    if cmp -s "$dir/a-bound.txt" "$dir/b-bound.txt"; then same="yes"; else
        same="no: $(diff "$dir/a-bound.txt" "$dir/b-bound.txt" | grep -c '^[<>]') lines differ"
    fi
    echo "states after: a=$sa b=$sb; bound leases: A $count_a, B $count_b; identical: $same" | tee -a "$dir/round.log" >&2
    rows+="| $round | $count_a | $(awk -v ms="$sync_ms" 'BEGIN { printf "%.2f s", ms / 1000 }') | "
    rows+="$(awk -v ms="$from_first_ms" 'BEGIN { printf "%.2f s", ms / 1000 }') | $count_b, identical: $same | a=$sa b=$sb |\n"
    times+=("$sync_ms")
    stop_pids
    rm -f "$dir"/a-bound.txt "$dir"/b-bound.txt
    gzip -f "$dir/a.log" # a line per lease granted
done

page=${SYNC_PAGE_SIZE:-10000}
report="B (standby, memory: store, empty) started beside A (primary, in partner-down, $LEASES bound leases \
on memory:), over their own veth link; sync-page-size $page, heartbeat-delay $HEARTBEAT_MS ms. \
Time from B's start (just before exec) to its log line \"HA: synced; serving\". $(nproc) cores, \
everything on this one machine.\n\n"
report+="| round | bound leases on A | B synced and serving after | from B's first log line | bound leases on B | states after |\n"
report+="|---|---|---|---|---|---|\n$rows"
if [ ${#times[@]} -gt 0 ]; then
    median=$(printf '%s\n' "${times[@]}" | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }')
    report+="\nMedian: $(awk -v ms="$median" 'BEGIN { printf "%.2f s", ms / 1000 }') over ${#times[@]} rounds.\n"
fi
printf "%b" "$report"
printf "%b" "$report" >"$LOGDIR/sync.md"
