#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit, fixture and CLI tests.
# Installs what it needs on a Debian machine (run as root, or with the tools present).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*"; }

. scripts/lib.sh

# Debian packages the tests use: systemd-analyze (unit verification), jq and
# hyperfine (benchmark comparisons).
need_debs() {
    local missing=()
    command -v systemd-analyze >/dev/null || missing+=(systemd)
    command -v jq >/dev/null || missing+=(jq)
    if [ ${#missing[@]} -gt 0 ]; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            log "installing ${missing[*]}"
            export DEBIAN_FRONTEND=noninteractive
            apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
        else
            echo "note: missing ${missing[*]}; tests that need them will say so" >&2
        fi
    fi
}

need_cargo
need_debs

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --locked -- -D warnings

log "cargo test"
cargo test --all-targets --locked

log "all tests passed"
