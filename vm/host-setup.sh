#!/usr/bin/env bash
# Host tools for the real-kernel tests (Debian 12, root, idempotent): QEMU,
# debootstrap, e2fsprogs (mkfs.ext4 -d), busybox-static (the container image).
set -euo pipefail
need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v mkfs.ext4 >/dev/null || need+=(e2fsprogs)
[ -x /bin/busybox ] || need+=(busybox-static)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "vm/host-setup.sh: need root to install: ${need[*]}" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
mirror() {
    awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null | grep . ||
        awk '$1 == "deb" {print $2; exit}' /etc/apt/sources.list
}
others=()
for p in "${need[@]}"; do [ "$p" = qemu-system-x86 ] || others+=("$p"); done
[ ${#others[@]} -gt 0 ] && apt-get install -y -qq --no-install-recommends "${others[@]}"
if [[ " ${need[*]} " == *" qemu-system-x86 "* ]]; then
    # A newer qemu-utils preinstalled on some machines blocks bookworm's
    # qemu-system-x86; bookworm-backports has a matching one.
    if ! apt-get install -y -qq --no-install-recommends qemu-system-x86; then
        cat > /etc/apt/sources.list.d/ds01-bookworm-backports.sources <<SRC
Types: deb
URIs: $(mirror)
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends -t bookworm-backports qemu-system-x86
    fi
fi
