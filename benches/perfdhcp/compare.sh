#!/usr/bin/env bash
# perfdhcp against our server on each lease store and against ISC Kea on its memfile and
# PostgreSQL lease backends, one after the other on this machine in this run. For each variant:
#   - the highest offered rate (from RATES, climbing until a rate drops more than 0.1%),
#     full DORA, 50000 distinct clients, PERIOD seconds, each rate on a freshly started server
#     with an empty store;
#   - the server's CPU time (utime + stime from /proc) per completed DORA during that run
#     (the store server's own CPU, PostgreSQL's or Redis's, is not included);
#   - for ours-redis, redis-server's CPU per DORA as well, and its per-command statistics
#     (INFO commandstats: calls and microseconds, commands inside scripts included) in
#     LOGDIR/ours-redis-RATE-commandstats.txt.
# Every server runs in its own network namespace whose loopback also holds 127.0.0.2, where
# perfdhcp acts as the relay (../../shared/TESTING.md); PostgreSQL is reached through its Unix
# socket directory, Redis is a private instance on a Unix socket. Raw output goes to LOGDIR.
#
# Usage: benches/perfdhcp/compare.sh [--quick] [--out FILE] [VARIANT...]
#   VARIANT: ours-memory ours-journal ours-sqlite ours-postgres ours-redis kea-memfile
#            kea-memfile-persist kea-postgres (default: all)
#   (kea-memfile-persist: memfile writing its lease file, Kea's local durable store; Kea does
#   not fsync it, where our journal syncs every grant)
#   --quick   a short smoke run (rates 250 1000, 3 s each)
#   env: RATES="250 500 ..." PERIOD=10 LOGDIR=target/perfdhcp OURS=path/to/dhcp-server
#        PGSOCKET=/var/run/postgresql (the host's PostgreSQL, trust auth, database test)
#        THREADS=N      our server's `threads` (default: its own, the number of cores)
#        SERVER_EXTRA="max-in-flight = 256"  more lines for our server's [server] table
#        KEA_THREADS=N  Kea's multi-threading with N threads (default: off, Kea 2.2's default)
#        SERVER_CPUS=0  run the server under `taskset -c` this CPU list
#        PERF_CPUS=1    run perfdhcp under `taskset -c` this CPU list
#        PERF_MODE=multi  perfdhcp's -g mode (default single: one thread sends and receives)
#        GENERATORS=2   two perfdhcp processes at half the rate each, the second relaying from
#                       127.0.0.3 into subnet 2 (another partition of the memory store), for
#                       when one perfdhcp is the limit (on a machine with cores to spare);
#                       their counts are summed
set -euo pipefail
cd "$(dirname "$0")/../.."
. benches/perfdhcp/common.sh

RATES=${RATES:-"250 500 1000 2000 4000 8000 12000 16000 20000"}
PERIOD=${PERIOD:-10}
LOGDIR=${LOGDIR:-target/perfdhcp}
PGSOCKET=${PGSOCKET:-/var/run/postgresql}
OUT=""
VARIANTS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) RATES="250 1000"; PERIOD=3 ;;
        --out) OUT="$2"; shift ;;
        ours-memory | ours-journal | ours-sqlite | ours-postgres | ours-redis | kea-memfile | kea-memfile-persist | kea-postgres)
            VARIANTS+=("$1") ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
[ ${#VARIANTS[@]} -gt 0 ] || VARIANTS=(ours-memory ours-journal ours-sqlite ours-postgres ours-redis kea-memfile kea-memfile-persist kea-postgres)

for tool in perfdhcp kea-dhcp4 kea-admin ip psql redis-server redis-cli; do
    command -v "$tool" >/dev/null || {
        echo "missing $tool (apt-get install kea-admin kea-dhcp4-server iproute2 postgresql-client redis-server redis-tools)" >&2
        exit 2
    }
done
mkdir -p "$LOGDIR"
# OURS=/path/to/dhcp-server measures another build of ours (an earlier commit's, for a
# before/after comparison); by default this checkout's release build.
if [ -z "${OURS:-}" ]; then
    cargo build --release -q -p dhcp-examples --bin dhcp-server
    OURS="$PWD/target/release/dhcp-server"
fi
TMP=$(mktemp -d)
chmod 755 "$TMP"
NS="perf$$"
SERVER_PID=""
REDIS_PID=""
PG_SCHEMA="perfbench_$$"
KEA_DB="kea_bench"

psql_test() { PGOPTIONS="-c client_min_messages=warning" psql -X -q -h "$PGSOCKET" -U postgres -d test -c "$1" >/dev/null; }

cleanup() {
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true
    [ -n "$REDIS_PID" ] && kill "$REDIS_PID" 2>/dev/null || true
    if ip netns list | grep -qw "$NS"; then
        for pid in $(ip netns pids "$NS"); do kill -9 "$pid" 2>/dev/null || true; done
        ip netns del "$NS"
    fi
    psql_test "DROP SCHEMA IF EXISTS $PG_SCHEMA CASCADE" 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

ip netns add "$NS"
ip -n "$NS" link set lo up
ip -n "$NS" addr add 127.0.0.2/8 dev lo
ip -n "$NS" addr add 127.0.0.3/8 dev lo # the second generator's relay address

# Our server's config for a store URL: bench.toml with its store line replaced.
our_config() { # $1: store URL
    local threads=""
    [ -n "${THREADS:-}" ] && threads="\nthreads = $THREADS"
    [ -n "${SERVER_EXTRA:-}" ] && threads+="\n$SERVER_EXTRA"
    sed "s|^store = .*|store = \"$1\"$threads|" examples/config/bench.toml >"$TMP/ours.toml"
}

# Kea's config for a variant: the bench config, with multi-threading when KEA_THREADS is set.
kea_threads() { # $1: config file, edited in place
    [ -n "${KEA_THREADS:-}" ] || return 0
    sed -i 's|"Dhcp4": {|"Dhcp4": { "multi-threading": { "enable-multi-threading": true, "thread-pool-size": '"$KEA_THREADS"', "packet-queue-size": 64 },|' "$1"
}

# Command prefixes that run the server and perfdhcp under taskset when a CPU list is given (a
# prefix, not a function, so that `$!` is the server's own pid: taskset and ip exec it).
PIN_SERVER=()
PIN_PERF=()
[ -n "${SERVER_CPUS:-}" ] && PIN_SERVER=(taskset -c "$SERVER_CPUS")
[ -n "${PERF_CPUS:-}" ] && PIN_PERF=(taskset -c "$PERF_CPUS")

# Kea on PostgreSQL: its own role and database, schema made by kea-admin (TESTING.md).
kea_postgres_init() {
    psql -X -q -h "$PGSOCKET" -U postgres -d postgres -c "DROP DATABASE IF EXISTS $KEA_DB" >/dev/null
    psql -X -q -h "$PGSOCKET" -U postgres -d postgres \
        -c "DO \$\$ BEGIN CREATE ROLE kea LOGIN PASSWORD 'kea'; EXCEPTION WHEN duplicate_object THEN NULL; END \$\$" >/dev/null
    psql -X -q -h "$PGSOCKET" -U postgres -d postgres -c "CREATE DATABASE $KEA_DB OWNER kea" >/dev/null
    kea-admin db-init pgsql -u kea -p kea -n "$KEA_DB" -h "$PGSOCKET" >"$TMP/kea-admin.log" 2>&1 || {
        cat "$TMP/kea-admin.log" >&2
        exit 1
    }
    sed 's|"lease-database": {[^}]*}|"lease-database": { "type": "postgresql", "name": "'"$KEA_DB"'", "user": "kea", "password": "kea", "host": "'"$PGSOCKET"'" }|' \
        benches/perfdhcp/kea-bench.json >"$TMP/kea-postgres.json"
}

# Empties the variant's store, so that every rate starts from nothing.
reset_store() {
    case "$1" in
        ours-memory | kea-memfile) ;;
        kea-memfile-persist) rm -f "$TMP/kea-leases4.csv"* ;;
        ours-journal) rm -f "$TMP/leases.journal"* ;;
        ours-sqlite) rm -f "$TMP/leases.db"* ;;
        ours-postgres) psql_test "DROP SCHEMA IF EXISTS $PG_SCHEMA CASCADE; CREATE SCHEMA $PG_SCHEMA" ;;
        ours-redis) redis-cli -s "$TMP/redis.sock" flushall >/dev/null ;;
        kea-postgres) psql -X -q -h "$PGSOCKET" -U postgres -d "$KEA_DB" -c "TRUNCATE lease4" >/dev/null ;;
    esac
}

prepare_variant() {
    case "$1" in
        ours-memory) our_config "memory:" ;;
        ours-journal) our_config "memory:?journal=$TMP/leases.journal" ;;
        ours-sqlite) our_config "sqlite://$TMP/leases.db" ;;
        ours-postgres)
            our_config "postgresql://postgres@${PGSOCKET//\//%2F}/test?options=-c%20search_path%3D$PG_SCHEMA" ;;
        ours-redis)
            if [ -z "$REDIS_PID" ]; then
                redis-server --port 0 --unixsocket "$TMP/redis.sock" --unixsocketperm 777 --save "" \
                    --appendonly no >"$TMP/redis.log" 2>&1 &
                REDIS_PID=$!
                for _ in $(seq 1 50); do [ -S "$TMP/redis.sock" ] && break; sleep 0.1; done
            fi
            our_config "redis+unix://$TMP/redis.sock?prefix=bench:" ;;
        kea-memfile) cp benches/perfdhcp/kea-bench.json "$TMP/kea-memfile.json" ;;
        kea-memfile-persist)
            sed 's|"lease-database": {[^}]*}|"lease-database": { "type": "memfile", "persist": true, "name": "'"$TMP"'/kea-leases4.csv", "lfc-interval": 3600 }|' \
                benches/perfdhcp/kea-bench.json >"$TMP/kea-memfile-persist.json" ;;
        kea-postgres) kea_postgres_init ;;
    esac
    case "$1" in kea-*) kea_threads "$TMP/$1.json" ;; esac
}

start_server() { # $1: variant
    reset_store "$1"
    case "$1" in
        ours-*) "${PIN_SERVER[@]}" ip netns exec "$NS" "$OURS" --config "$TMP/ours.toml" 2>"$TMP/server.log" & ;;
        kea-*) KEA_PIDFILE_DIR="$TMP" KEA_LOCKFILE_DIR="$TMP" "${PIN_SERVER[@]}" ip netns exec "$NS" kea-dhcp4 \
            -c "$TMP/$1.json" >"$TMP/server.log" 2>&1 & ;;
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

stop_server() { # $1: the log's name in LOGDIR
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
    cp "$TMP/server.log" "$LOGDIR/$1-server.log" 2>/dev/null || true
}


# Runs perfdhcp at rate $2 against the running server, logging to $LOGDIR/$1-$2.txt (and
# $1-$2-g2.txt for a second generator); prints "completed_rate drop_percent acks_received",
# summed over the generators.
measure() {
    local log="$LOGDIR/$1-$2.txt"
    local generators=${GENERATORS:-1}
    local rate=$(($2 / generators))
    local logs=("$log")
    local pids=()
    "${PIN_PERF[@]}" ip netns exec "$NS" perfdhcp -4 -g "${PERF_MODE:-single}" -l 127.0.0.2 -R 50000 -p "$PERIOD" -W 500000 -r "$rate" \
        127.0.0.1 >"$log" 2>&1 &
    pids+=($!)
    if [ "$generators" = 2 ]; then
        logs+=("$LOGDIR/$1-$2-g2.txt")
        "${PIN_PERF[@]}" ip netns exec "$NS" perfdhcp -4 -g "${PERF_MODE:-single}" -l 127.0.0.3 -R 50000 -p "$PERIOD" -W 500000 -r "$rate" \
            -b mac=02:20:00:00:00:00 127.0.0.1 >"${logs[1]}" 2>&1 &
        pids+=($!)
    fi
    wait "${pids[@]}" || true
    perfdhcp_totals "${logs[@]}"
}

declare -A CLEAN CPU_US
report="Offered rates $RATES (climbing until drops exceed 0.1%), ${PERIOD} s each, \
perfdhcp -4 -g single -R 50000 -W 500000, relay 127.0.0.2, a fresh server and empty store per rate.\n"
for variant in "${VARIANTS[@]}"; do
    prepare_variant "$variant"
    table="| offered/s | completed/s | drops | server CPU per DORA | store server CPU per DORA |\n|---|---|---|---|---|\n"
    CLEAN[$variant]=0
    CPU_US[$variant]="n/a"
    for rate in $RATES; do
        start_server "$variant"
        store_cpu="—"
        if [ "$variant" = ours-redis ]; then
            redis-cli -s "$TMP/redis.sock" config resetstat >/dev/null
            store_before=$(cpu_ticks "$REDIS_PID")
        fi
        before=$(cpu_ticks "$SERVER_PID")
        read -r completed drops acks < <(measure "$variant" "$rate")
        after=$(cpu_ticks "$SERVER_PID")
        if [ "$variant" = ours-redis ]; then
            store_after=$(cpu_ticks "$REDIS_PID")
            store_cpu="$(per_dora $((store_after - store_before)) "$acks") µs"
            redis-cli -s "$TMP/redis.sock" info commandstats >"$LOGDIR/$variant-$rate-commandstats.txt"
        fi
        stop_server "$variant-$rate"
        cpu=$(per_dora $((after - before)) "$acks")
        table+="| $rate | $completed | $drops% | $cpu µs | $store_cpu |\n"
        if awk -v d="$drops" 'BEGIN { exit !(d <= 0.1) }'; then
            CLEAN[$variant]=$rate
            CPU_US[$variant]=$cpu
        else
            break
        fi
    done
    report+="\n### $variant\n\n$table"
    printf "%s: clean up to %s/s, %s µs CPU per DORA there\n" "$variant" "${CLEAN[$variant]}" "${CPU_US[$variant]}" >&2
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0 && a > 0) printf "%.2f", a / b; else print "n/a" }'; }
report+="\n### Summary\n\n| variant | highest clean rate, DORA/s offered | vs Kea memfile | vs Kea PostgreSQL | server CPU per DORA there |\n|---|---|---|---|---|\n"
for variant in "${VARIANTS[@]}"; do
    report+="| $variant | ${CLEAN[$variant]} | $(ratio "${CLEAN[$variant]}" "${CLEAN[kea-memfile]:-0}") | "
    report+="$(ratio "${CLEAN[$variant]}" "${CLEAN[kea-postgres]:-0}") | ${CPU_US[$variant]} µs |\n"
done
printf "%b" "$report"
if [ -n "$OUT" ]; then printf "%b" "$report" >"$OUT"; fi
if [ "${CLEAN[ours-memory]:-1}" = 0 ]; then
    echo "our server on the memory store dropped more than 0.1% even at the lowest rate" >&2
    exit 1
fi
