#!/usr/bin/env bash
# Put the static busybox binary into the example base image's rootfs.
# No public registry is reachable here, so the example stack starts FROM
# scratch with Debian's busybox-static; the binary is not committed.
set -euo pipefail
cd "$(dirname "$0")/.."

source_binary=${BUSYBOX:-/usr/bin/busybox}
target=images/base/rootfs/bin/busybox
if [ ! -x "$source_binary" ]; then
    echo "prepare-example: $source_binary not found; install Debian's busybox-static" >&2
    exit 3
fi
if ! cmp -s "$source_binary" "$target" 2>/dev/null; then
    mkdir -p "$(dirname "$target")"
    cp "$source_binary" "$target"
    chmod 0755 "$target"
    echo "prepare-example: copied $source_binary into $target"
fi
