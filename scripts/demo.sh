#!/usr/bin/env bash
# Build ds01 and run the main job on the embedded demo config, in a temp dir.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
need_cargo
exec cargo run --release --locked --quiet -- demo "$@"
