#!/usr/bin/env bash
# QEMU user emulation for foreign-platform builds (BuildKit runs a linux/arm64
# image's RUN steps through it): installs Debian's qemu-user-static where it is
# missing, mounts binfmt_misc and makes sure the interpreters are registered.
# Root only, and only what is missing: safe to run twice. Without root it says
# what is missing and exits 0 (builds of foreign images with RUN steps then fail
# with an error that says the same).
set -euo pipefail

say() { echo "emulation: $*"; }
BINFMT=/proc/sys/fs/binfmt_misc
WANT=(aarch64)  # the foreign architectures the example stack builds for, as QEMU names them

registered() { [ -e "$BINFMT/qemu-$1" ]; }
all_registered() {
    local arch
    for arch in "${WANT[@]}"; do
        registered "$arch" || return 1
    done
}

if [ "$(id -u)" -ne 0 ]; then
    all_registered || say "not root: install qemu-user-static and register its binfmt interpreters to build foreign platforms"
    exit 0
fi

if ! command -v qemu-aarch64-static >/dev/null 2>&1; then
    say "apt-get install -y qemu-user-static binfmt-support"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        qemu-user-static binfmt-support >/dev/null
fi
if [ ! -e "$BINFMT/register" ]; then
    say "mounting binfmt_misc"
    mount -t binfmt_misc binfmt_misc "$BINFMT"
fi
if ! all_registered; then
    if command -v update-binfmts >/dev/null 2>&1; then
        say "update-binfmts --enable"
        update-binfmts --enable >/dev/null 2>&1 || true
    fi
    # no binfmt-support (or it did not register them): import Debian's descriptions
    for arch in "${WANT[@]}"; do
        registered "$arch" && continue
        if command -v update-binfmts >/dev/null 2>&1 && [ -e "/usr/share/binfmts/qemu-$arch" ]; then
            update-binfmts --import "qemu-$arch" >/dev/null 2>&1 || true
        fi
    done
fi
for arch in "${WANT[@]}"; do
    if registered "$arch"; then
        say "qemu-$arch registered"
    else
        say "could not register qemu-$arch; foreign-platform RUN steps will fail" >&2
    fi
done
