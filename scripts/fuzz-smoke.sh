#!/usr/bin/env bash
# A short run of every fuzz target: FUZZ_SECONDS each (default 20). Prints each target's
# executions and executions per second, and fails (exit 1) when any target crashes, naming the
# target and the crash input libFuzzer wrote. Installs the nightly toolchain and cargo-fuzz
# when missing (a fresh Debian machine with rustup is enough).
#
#   scripts/fuzz-smoke.sh                 # 20 s a target
#   FUZZ_SECONDS=5 scripts/fuzz-smoke.sh
#
# New inputs found go to a temporary directory; the committed seeds in fuzz/corpus/ are read,
# not written.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds=${FUZZ_SECONDS:-20}
log() { printf '\n==> %s\n' "$*"; }

if ! command -v rustup >/dev/null 2>&1; then
    echo "rustup is not installed: cargo-fuzz needs a nightly toolchain from rustup" >&2
    exit 1
fi
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    log "installing the nightly toolchain (cargo-fuzz's sanitizer flags need it)"
    rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    log "installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

log "building the fuzz targets"
start=$SECONDS
cargo +nightly fuzz build
echo "built in $((SECONDS - start)) s"

mapfile -t targets < <(cargo +nightly fuzz list)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

failed=()
for target in "${targets[@]}"; do
    log "fuzz $target for ${seconds} s"
    mkdir -p "$work/$target" "corpus/$target"
    out="$work/$target.log"
    status=0
    began=$SECONDS
    cargo +nightly fuzz run "$target" "$work/$target" "corpus/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 >"$out" 2>&1 || status=$?
    # libFuzzer's last line on success: "Done 123456 runs in 20 second(s)".
    done_line=$(grep -E '^Done [0-9]+ runs in [0-9]+ second' "$out" | tail -1 || true)
    if [ "$status" -eq 0 ] && [ -n "$done_line" ]; then
        runs=$(awk '{print $2}' <<<"$done_line")
        secs=$(awk '{print $5}' <<<"$done_line")
        printf '%-10s %12d executions in %3d s, %9d exec/s, corpus %d inputs (%d s with cargo)\n' \
            "$target" "$runs" "$secs" "$((runs / (secs > 0 ? secs : 1)))" \
            "$(($(ls "$work/$target" | wc -l) + $(ls "corpus/$target" | wc -l)))" "$((SECONDS - began))"
    else
        artifact=$(grep -oE 'Test unit written to [^ ]+' "$out" | tail -1 | sed 's/^Test unit written to //' || true)
        tail -n 60 "$out" >&2
        echo "FUZZ CRASH in target '$target' (exit status $status); input: ${artifact:-none written, see the log above}" >&2
        case "$artifact" in /*) ;; ?*) artifact="$PWD/$artifact" ;; esac
        failed+=("$target${artifact:+ ($artifact)}")
    fi
done

if [ ${#failed[@]} -gt 0 ]; then
    log "fuzz smoke FAILED"
    printf '  %s\n' "${failed[@]}" >&2
    exit 1
fi
log "fuzz smoke passed: ${#targets[@]} targets, ${seconds} s each, no crash ($SECONDS s in all)"
