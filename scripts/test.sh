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
# perfdhcp (kea-admin); procps for pkill in cleanup.
need_packages iproute2 procps isc-dhcp-client busybox udhcpc dhcpcd-base nmap kea-admin

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets -- -D warnings

log "dhcp-core builds without std"
cargo build -p dhcp-core --no-default-features

log "cargo test (unit, integration, property and doc tests)"
cargo test --workspace

log "benchmarks, each run once"
cargo test -p dhcp-benches --benches --release

