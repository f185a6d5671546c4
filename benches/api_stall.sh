#!/usr/bin/env bash
# Whether a large management API call stalls DHCP work. Our server on `memory:` is filled with
# LEASES leases by perfdhcp, then perfdhcp runs at RATE DORA/s for PERIOD seconds on new
# clients: alone; while one `GET /api/v1/leases` (every lease, streamed as JSON) runs; while the
# whole list is walked in pages of 10,000 (`limit`/`after`), over and over; and while the full
# listing runs over and over, back to back (the worst case: on two cores curl and the kernel's
# copies alone take a core). Drops and completed rates of the runs are compared; the sizes and
# times of the API answers are shown. The API runs on a thread of its own.
#
# Topology (as benches/perfdhcp/compare.sh): one network namespace whose loopback also holds
# 127.0.0.2, where perfdhcp acts as the relay; the server listens on 127.0.0.1:67.
#
# Usage: benches/api_stall.sh      (root)
#   env: LEASES=1000000 FILL_RATE=25000 RATE=5000 PERIOD=20 OURS=path/to/dhcp-server
#        LOGDIR=target/api-stall
# Output: a markdown report on stdout and in LOGDIR/api-stall.md.
set -euo pipefail
cd "$(dirname "$0")/.."

LEASES=${LEASES:-1000000}
FILL_RATE=${FILL_RATE:-25000}
RATE=${RATE:-5000}
PERIOD=${PERIOD:-20}
LOGDIR=${LOGDIR:-target/api-stall}
TOKEN="api-stall-token-0123"

[ "$(id -u)" = 0 ] || { echo "run as root (network namespaces)" >&2; exit 2; }
for tool in ip perfdhcp curl; do
    command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install iproute2 kea-admin curl)" >&2; exit 2; }
done
if [ -z "${OURS:-}" ]; then
    cargo build --release -q -p dhcp-examples --bin dhcp-server
    OURS="$PWD/target/release/dhcp-server"
fi
mkdir -p "$LOGDIR"
TMP=$(mktemp -d)
NS="stall$$"
cleanup() {
    if ip netns list | grep -qw "$NS"; then
        for pid in $(ip netns pids "$NS"); do kill -9 "$pid" 2>/dev/null || true; done
        ip netns del "$NS"
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ip netns add "$NS"
ip -n "$NS" link set lo up
ip -n "$NS" addr add 127.0.0.2/8 dev lo

# A pool of 4 million addresses and day-long leases: the fill's leases stay bound throughout.
cat >"$TMP/ours.toml" <<EOF
lease-time = 86400
[server]
listen = ["127.0.0.1"]
store = "memory:"
log-level = "warn"
api-listen = "127.0.0.1:8067"
api-token = "$TOKEN"
[[subnets]]
id = 1
subnet = "10.0.0.0/8"
pools = ["10.64.0.1-10.127.255.254"]
relay-addresses = ["127.0.0.2"]
EOF
ip netns exec "$NS" "$OURS" --config "$TMP/ours.toml" 2>"$LOGDIR/server.log" &
disown
for _ in $(seq 1 50); do
    ip netns exec "$NS" curl -sf -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8067/api/v1/health >/dev/null && break
    sleep 0.1
done

stat() { # the server's statistic $1
    ip netns exec "$NS" curl -sf -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8067/api/v1/stats |
        tr ',{}' '\n\n\n' | awk -F: -v k="\"$1\"" '$1 == k { print $2 }'
}

# perfdhcp full DORA at rate $1 for $2 s on clients from MAC base $3; prints "completed/s drops%".
perf() {
    local log="$LOGDIR/perfdhcp-$3.txt"
    ip netns exec "$NS" perfdhcp -4 -g single -l 127.0.0.2 -R 4000000 -p "$2" -W 500000 -r "$1" \
        -b "mac=$3" 127.0.0.1 >"$log" 2>&1 || true
    awk '/^sent packets:/ { s[++n] = $3 } /^received packets:/ { r[++m] = $3 }
        /^drops ratio:/ { d = d (d ? ", " : "") $3 "%" }
        END { printf "%.0f %s\n", r[2] / '"$2"', d }' "$log"
}

echo "filling $LEASES leases at up to $FILL_RATE/s" >&2
assigned=0
round=0
while [ "${assigned:-0}" -lt "$LEASES" ] && [ $round -lt 40 ]; do
    round=$((round + 1))
    left=$((LEASES - ${assigned:-0}))
    perf "$FILL_RATE" "$(((left + FILL_RATE - 1) / FILL_RATE))" "$(printf '02:f%x:00:00:00:00' $((round % 16)))" >/dev/null
    assigned=$(stat "subnet[1].assigned-addresses")
    echo "  $assigned assigned" >&2
done
echo "assigned after the fill: $assigned" >&2

echo "perfdhcp at $RATE/s alone" >&2
alone=$(perf "$RATE" "$PERIOD" 02:a0:00:00:00:00)

api() { # GET $1 from the API, appending "bytes seconds" to $2, the body to $3
    ip netns exec "$NS" curl -s -o "$3" -w '%{size_download} %{time_total}\n' \
        -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:8067$1" >>"$2" || true
}
summary() { # what the API calls logged in $1 took
    awk '{ n++; b += $1; t += $2; if ($2 > max) max = $2 } END { if (n) printf "%d answers: %.1f MB, %.2f s on average, %.2f s at most", n, b / n / 1e6, t / n, max }' "$1"
}

echo "perfdhcp at $RATE/s while one GET /api/v1/leases runs" >&2
: >"$LOGDIR/one.txt"
( sleep 2; api /api/v1/leases "$LOGDIR/one.txt" /dev/null ) &
getter=$!
one=$(perf "$RATE" "$PERIOD" 02:b1:00:00:00:00)
wait "$getter" || true

echo "perfdhcp at $RATE/s while the list is walked in pages of 10,000, over and over" >&2
: >"$LOGDIR/pages.txt"
(
    end=$((SECONDS + PERIOD))
    after=""
    while [ $SECONDS -lt $end ]; do
        api "/api/v1/leases?limit=10000${after:+&after=$after}" "$LOGDIR/pages.txt" "$TMP/page.json"
        after=$(grep -o '"next":"[0-9.]*"' "$TMP/page.json" | cut -d'"' -f4 || true)
    done
) &
getter=$!
paged=$(perf "$RATE" "$PERIOD" 02:b2:00:00:00:00)
wait "$getter" || true

echo "perfdhcp at $RATE/s while GET /api/v1/leases runs over and over" >&2
: >"$LOGDIR/gets.txt"
(
    end=$((SECONDS + PERIOD))
    while [ $SECONDS -lt $end ]; do
        api /api/v1/leases "$LOGDIR/gets.txt" /dev/null
    done
) &
getter=$!
busy=$(perf "$RATE" "$PERIOD" 02:b0:00:00:00:00)
wait "$getter" || true

report="## A large API call during DHCP load ($(date -u +%F))

\`benches/api_stall.sh\`: $assigned leases in \`memory:\`, perfdhcp at $RATE DORA/s for $PERIOD s
on new clients, $(nproc) cores.

| run | completed/s | drops (DISCOVER-OFFER, REQUEST-ACK) |
|---|---|---|
| perfdhcp alone | ${alone%% *} | ${alone#* } |
| while one \`GET /api/v1/leases\` runs ($(summary "$LOGDIR/one.txt")) | ${one%% *} | ${one#* } |
| while pages of 10,000 are walked over and over ($(summary "$LOGDIR/pages.txt")) | ${paged%% *} | ${paged#* } |
| while \`GET /api/v1/leases\` repeats back to back ($(summary "$LOGDIR/gets.txt")) | ${busy%% *} | ${busy#* } |
"
printf "%s" "$report"
printf "%s" "$report" >"$LOGDIR/api-stall.md"
