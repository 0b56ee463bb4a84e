#!/usr/bin/env bash
# Make sure a Docker engine answers, and (as root) that the tools the integration
# tests lean on are installed: busybox-static (rootfs of every test image) and
# docker-registry (a real registry). Idempotent: safe to run any number of times.
#
# Exit codes: 0 engine up, 3 no engine and not root (nothing we may do about it),
# other: an install or start step failed.
set -euo pipefail

LOG=/var/log/stackbuild-dockerd.log
WAIT_SECONDS=60

say() { echo "ensure-docker: $*"; }

engine_answers() {
    # the SDK honours DOCKER_HOST exactly like stackbuild does; fall back to the CLI
    if command -v python3 >/dev/null 2>&1 &&
        python3 -c 'import docker; docker.from_env(timeout=10).ping()' >/dev/null 2>&1; then
        return 0
    fi
    local cli
    for cli in /usr/bin/docker docker; do
        if command -v "$cli" >/dev/null 2>&1 &&
            timeout 15 "$cli" version --format '{{.Server.Version}}' >/dev/null 2>&1; then
            return 0
        fi
    done
    return 1
}

is_root() { [ "$(id -u)" -eq 0 ]; }

apt_updated=0
apt_install() {
    # one apt-get update per run, and only when something is actually missing
    if [ "$apt_updated" -eq 0 ]; then
        say "apt-get update"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        apt_updated=1
    fi
    say "apt-get install -y $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

install_missing() {
    local missing=()
    [ -x /usr/bin/busybox ] || missing+=(busybox-static)
    command -v docker-registry >/dev/null 2>&1 || missing+=(docker-registry)
    if [ "${1:-}" = with-engine ]; then
        command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
    fi
    if [ "${#missing[@]}" -gt 0 ]; then
        apt_install "${missing[@]}"
    fi
}

if engine_answers; then
    say "a Docker engine answers${DOCKER_HOST:+ at $DOCKER_HOST}; not starting one"
    if is_root; then
        install_missing
    fi
    exit 0
fi

if ! is_root; then
    echo "ensure-docker: no Docker engine answers${DOCKER_HOST:+ at $DOCKER_HOST} and this is" \
        "not root, so none can be installed or started here: start dockerd (or point" \
        "DOCKER_HOST at a running engine) and run this again." >&2
    exit 3
fi

case "${DOCKER_HOST:-unix:///var/run/docker.sock}" in
unix:///var/run/docker.sock | unix:///run/docker.sock) ;;
*)
    # a local dockerd would not listen where DOCKER_HOST points
    echo "ensure-docker: no Docker engine answers at DOCKER_HOST=$DOCKER_HOST; start that" \
        "engine, or unset DOCKER_HOST to use (and start) the local one." >&2
    exit 3
    ;;
esac

install_missing with-engine

# a live dockerd, not a zombie: where PID 1 does not reap, a killed dockerd lingers
# as a zombie that pgrep still lists
live_dockerd() { ps -C dockerd -o pid=,stat= 2>/dev/null | awk '$2 !~ /^Z/ {print $1; exit}'; }

running=$(live_dockerd || true)
if [ -n "$running" ]; then
    # started earlier (maybe by a previous run of this script) and still coming up
    say "dockerd is already running (pid $running); waiting for it"
else
    # a dockerd or containerd killed without cleaning up leaves pid files behind
    rm -f /var/run/docker.pid /var/run/docker/containerd/containerd.pid
    say "starting dockerd in the background (log: $LOG)"
    nohup dockerd >"$LOG" 2>&1 &
fi

for _ in $(seq "$WAIT_SECONDS"); do
    if engine_answers; then
        say "the Docker engine answers"
        exit 0
    fi
    sleep 1
done

echo "ensure-docker: dockerd did not answer within ${WAIT_SECONDS} s; see $LOG" >&2
tail -n 20 "$LOG" >&2 || true
exit 1
