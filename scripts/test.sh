#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit, fixture, CLI and host-kernel tests,
# a short run of every fuzz target, then the whole chain on a real kernel in a QEMU
# guest (vm/run.sh).
# Installs what it needs on a Debian machine (run as root, or with the tools present).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*"; }

. scripts/lib.sh

# Debian packages the tests use: systemd-analyze (unit verification), jq, the
# font plots are drawn with, tmux (ds01 top is driven through it), and Prometheus + promtool (the /metrics test scrapes
# two monitors with a real Prometheus server started on loopback).
need_debs() {
    local missing=()
    command -v systemd-analyze >/dev/null || missing+=(systemd)
    command -v jq >/dev/null || missing+=(jq)
    [ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing+=(fonts-dejavu-core)
    command -v prometheus >/dev/null && command -v promtool >/dev/null || missing+=(prometheus)
    command -v tmux >/dev/null || missing+=(tmux)
    if [ ${#missing[@]} -gt 0 ]; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            log "installing ${missing[*]}"
            export DEBIAN_FRONTEND=noninteractive
            # The packages' own services (prometheus) must not start here: the
            # tests run their own instances.
            local policy=/usr/sbin/policy-rc.d made_policy=
            if [ ! -e $policy ]; then
                printf '#!/bin/sh\nexit 101\n' >$policy && chmod +x $policy && made_policy=1
            fi
            local rc=0
            { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; } || rc=$?
            [ -z "$made_policy" ] || rm -f $policy
            [ $rc = 0 ] || { echo "apt-get failed ($rc)" >&2; exit $rc; }
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

# Every fuzz target, briefly (5 s each; scripts/fuzz.sh with no argument is the
# documented long run). A crash fails the suite; its input is in fuzz/artifacts/.
log "fuzz targets, 5 s each (scripts/fuzz.sh 5)"
scripts/fuzz.sh 5

# The whole chain on a real kernel: a Debian guest with systemd, cgroup v2 and dockerd
# (vm/run.sh, ~3 minutes with a cached image, ~5-6 without). Skippable locally with
# DS01_SKIP_VM=1 — loudly; never in CI.
if [ "${DS01_SKIP_VM:-0}" = 1 ]; then
    if [ "${CI:-}" = true ]; then
        echo "DS01_SKIP_VM=1 is not allowed in CI: the real-kernel scenario must run" >&2
        exit 1
    fi
    log "SKIPPED: real-kernel scenario (DS01_SKIP_VM=1)"
else
    log "real-kernel scenario (vm/run.sh)"
    ./vm/run.sh
fi

log "all tests passed"
