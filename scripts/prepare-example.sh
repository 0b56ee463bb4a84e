#!/usr/bin/env bash
# Put a static busybox binary per architecture into the example base image:
# images/base/arch/<arch>/bin/busybox, picked by the Dockerfile's TARGETARCH.
# No public registry is reachable here, so the example stack starts FROM
# scratch with Debian's busybox-static; the binaries are not committed.
# The host's own comes from /usr/bin/busybox (BUSYBOX overrides it); the other
# architectures (EXAMPLE_ARCHES, default "amd64 arm64") from Debian's
# busybox-static:<arch> package, downloaded and unpacked (as root:
# dpkg --add-architecture <arch> and apt-get update first, where missing).
set -euo pipefail
cd "$(dirname "$0")/.."

host_arch=$(dpkg --print-architecture 2>/dev/null || echo amd64)
source_binary=${BUSYBOX:-/usr/bin/busybox}
place() {  # place ARCH BINARY
    local target="images/base/arch/$1/bin/busybox"
    if ! cmp -s "$2" "$target" 2>/dev/null; then
        mkdir -p "$(dirname "$target")"
        cp "$2" "$target"
        chmod 0755 "$target"
        echo "prepare-example: copied $2 into $target"
    fi
}

if [ ! -x "$source_binary" ]; then
    echo "prepare-example: $source_binary not found; install Debian's busybox-static" >&2
    exit 3
fi
place "$host_arch" "$source_binary"

for arch in ${EXAMPLE_ARCHES:-amd64 arm64}; do
    [ "$arch" = "$host_arch" ] && continue
    [ -x "images/base/arch/$arch/bin/busybox" ] && continue
    if ! dpkg --print-foreign-architectures | grep -qx "$arch"; then
        if [ "$(id -u)" -ne 0 ]; then
            echo "prepare-example: no busybox for $arch (as root: dpkg --add-architecture $arch;" \
                "apt-get update; then run this again); only $host_arch builds" >&2
            continue
        fi
        dpkg --add-architecture "$arch"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
    fi
    tmp=$(mktemp -d)
    if (cd "$tmp" && apt-get download -qq "busybox-static:$arch" >/dev/null 2>&1 ||
        { [ "$(id -u)" -eq 0 ] && DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
          apt-get download -qq "busybox-static:$arch" >/dev/null; }); then
        dpkg-deb -x "$tmp"/busybox-static_*.deb "$tmp/unpacked"
        place "$arch" "$tmp/unpacked/bin/busybox"
    else
        echo "prepare-example: could not download busybox-static:$arch; only $host_arch builds" >&2
    fi
    rm -rf "$tmp"
done
