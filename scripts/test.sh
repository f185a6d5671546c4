#!/usr/bin/env bash
# The whole test suite: formatting, lints, the no_std build, unit, integration, property and doc
# tests, and a one-shot run of every benchmark. Installs what it needs on a fresh Debian machine.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }

if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo is not installed: install a Rust toolchain (rustup) first" >&2
    exit 1
fi

# Debian packages the tests use, installed when missing (needs root, as on CI machines).
need_packages() {
    local missing=()
    for pkg in "$@"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing ${missing[*]}"
        if [ "$(id -u)" -ne 0 ]; then
            echo "need root to install: ${missing[*]}" >&2
            exit 1
        fi
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
    fi
}
# iproute2 for the network namespaces; the real clients the end-to-end tests run against:
# dhclient (isc-dhcp-client), udhcpc (busybox, udhcpc), dhcpcd (dhcpcd-base), nmap, and
# perfdhcp (kea-admin); procps; psql (postgresql-client) for the crash test's schema;
# redis-server and redis-cli for the private Redis instances of the outage and schema tests;
# tcpdump to see what the server sent on the wire; openssl for the TLS tests' certificates;
# postgresql (initdb, pg_ctl, pg_basebackup) for private clusters and the store failover test.
# chromium, chromium-driver and python3-selenium for the portal's browser tests.
need_packages iproute2 procps isc-dhcp-client busybox udhcpc dhcpcd-base nmap kea-admin postgresql-client \
    redis-server redis-tools tcpdump openssl postgresql chromium chromium-driver python3-selenium

# The store tests talk to a real PostgreSQL at 127.0.0.1:5432 (trust auth, database `test`).
ensure_postgres() {
    if command -v pg_isready >/dev/null 2>&1 && pg_isready -q -h 127.0.0.1 -p 5432; then
        return
    fi
    log "starting PostgreSQL"
    need_packages postgresql
    if command -v pg_ctlcluster >/dev/null 2>&1 && ls /etc/postgresql/*/main >/dev/null 2>&1; then
        local version
        version=$(ls /etc/postgresql | sort -V | tail -1)
        pg_ctlcluster "$version" main start || service postgresql start
    else
        service postgresql start
    fi
    for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
    pg_isready -h 127.0.0.1 -p 5432
    # A fresh install asks for passwords on TCP; the tests connect as postgres without one.
    local hba
    hba=$(su postgres -c "psql -tAc 'show hba_file'")
    if ! grep -q "^host all all 127.0.0.1/32 trust" "$hba"; then
        sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
        su postgres -c "psql -c 'select pg_reload_conf()'" >/dev/null
    fi
    su postgres -c "psql -tAc \"select 1 from pg_database where datname = 'test'\"" | grep -q 1 ||
        su postgres -c "createdb test"
}
ensure_postgres

# And a real Redis at 127.0.0.1:6379; keys that earlier runs' tests left are removed.
ensure_redis() {
    if ! (command -v redis-cli >/dev/null 2>&1 && redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1); then
        log "starting Redis"
        need_packages redis-server redis-tools
        redis-server --bind 127.0.0.1 --port 6379 --daemonize yes --save '' --appendonly no
        for _ in $(seq 1 30); do redis-cli -h 127.0.0.1 ping >/dev/null 2>&1 && break; sleep 0.2; done
    fi
    redis-cli -h 127.0.0.1 --scan --pattern 'dhcptest:*' | xargs -r -n 500 redis-cli -h 127.0.0.1 del >/dev/null
}
ensure_redis

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets -- -D warnings

log "dhcp-core builds without std"
cargo build -p dhcp-core --no-default-features

# The layering the crates promise: arrows point down only (binaries -> dhcp-server -> dhcp-net,
# dhcp-store -> dhcp-core), no module imports another that imports it back, dhcp-net pulls in no
# store backend or HTTP stack, and the store backends really are optional.
log "layering: no import circles, dhcp-net without stores or HTTP, store features optional"
python3 scripts/module-cycles.py
if cargo tree -p dhcp-net -e normal --prefix none | grep -E '^(rusqlite|tokio-postgres|redis|axum|hyper|dhcp-store|dhcp-server) '; then
    echo "dhcp-net must depend on dhcp-core only, with no store backend and no HTTP stack" >&2
    exit 1
fi
cargo build -p dhcp-net --no-default-features
cargo build -p dhcp-store --no-default-features
cargo build -p dhcp-store --no-default-features --features memory
# ...where a URL for a store compiled out is refused naming the feature to turn on.
cargo test -p dhcp-store --no-default-features --features memory --lib
cargo build -p dhcp-server --no-default-features --features memory
if cargo tree -p dhcp-server --no-default-features --features memory -e normal --prefix none |
    grep -E '^(rusqlite|tokio-postgres|redis) '; then
    echo "dhcp-server with only the memory feature must not pull in SQLite, PostgreSQL or Redis" >&2
    exit 1
fi

log "cargo test (unit, integration, property and doc tests)"
cargo test --workspace

log "benchmarks, each run once"
cargo test -p dhcp-benches --benches --release

# Page loads are measured against what operators run: a release build (memory and journal
# stores only, which is all the test uses, to keep the build short).
log "portal page timings in Chromium against a release build (100,000 leases, 10,000 reservations)"
cargo build --release -p dhcp-examples --bin dhcp-server --no-default-features
DHCP_SERVER_BIN="$PWD/target/release/dhcp-server" \
    cargo test -p dhcp-examples --test portal every_page -- --nocapture

log "fuzz smoke (each target FUZZ_SECONDS s)"; bash scripts/fuzz-smoke.sh
