#!/usr/bin/env bash
# Build the Debian package from this checkout with dpkg-deb: the release binary
# stages itself (`ds01 install --prefix`), then control files and maintainer
# scripts from packaging/debian. Prints the .deb path.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
cargo build --release --locked --quiet
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
ARCH=$(dpkg --print-architecture)
OUT=${OUT:-$ROOT/target/debian}
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
chmod 0755 "$STAGE"
./target/release/ds01 install --prefix "$STAGE" --no-state-dirs >/dev/null
# The example config is the package's conffile at /etc/ds01/resource-limits.yaml.
mkdir -p "$STAGE/DEBIAN"
for s in postinst prerm postrm; do install -m 0755 "packaging/debian/$s" "$STAGE/DEBIAN/$s"; done
printf '/etc/ds01/resource-limits.yaml\n/etc/profile.d/ds01-quota-greeting.sh\n/etc/logrotate.d/ds01\n' >"$STAGE/DEBIAN/conffiles"
SIZE=$(du -sk "$STAGE" | cut -f1)
DEPENDS=$(dpkg-shlibdeps -O --ignore-missing-info -e"$STAGE/usr/bin/ds01" 2>/dev/null | sed -n 's/^shlibs:Depends=//p' || true)
cat >"$STAGE/DEBIAN/control" <<CONTROL
Package: ds01
Version: $VERSION
Architecture: $ARCH
Maintainer: ds01 developers <ds01@localhost>
Installed-Size: $SIZE
Depends: ${DEPENDS:-libc6 (>= 2.34)}
Recommends: docker.io | docker-ce, logrotate, fonts-dejavu-core
Section: admin
Priority: optional
Description: fair per-user resource limits for shared Docker servers
 ds01 reads resource-limits.yaml, turns each user's aggregate limits into systemd
 slices, places containers in them through a docker wrapper, collects per-user
 stats and OOM kills, and shows users their quota at login.
CONTROL
mkdir -p "$OUT"
DEB=$OUT/ds01_${VERSION}_${ARCH}.deb
dpkg-deb --root-owner-group -Zxz --build "$STAGE" "$DEB" >/dev/null
echo "$DEB"
