#!/usr/bin/env bash
# The main job: set up, build the example stack of images/ from stack.yaml,
# and show the hello page served by the built site-hello image.
# Safe to run twice: the second run builds nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
.venv/bin/stackbuild build "$@"

echo
echo "demo: serving site-hello:latest"
container=$(.venv/bin/python - <<'PY'
import docker
client = docker.from_env()
container = client.containers.run(
    "site-hello:latest", detach=True, ports={"8080/tcp": ("127.0.0.1", None)},
    labels={"stackbuild.demo": "1"},
)
print(container.id)
PY
)
cleanup() { .venv/bin/python -c "import docker,sys; docker.from_env().containers.get(sys.argv[1]).remove(force=True)" "$container" >/dev/null 2>&1 || true; }
trap cleanup EXIT
port=$(.venv/bin/python -c "
import docker, sys
c = docker.from_env().containers.get(sys.argv[1]); c.reload()
print(c.ports['8080/tcp'][0]['HostPort'])" "$container")
for _ in $(seq 1 50); do
    if page=$(curl -fsS "http://127.0.0.1:$port/" 2>/dev/null); then
        echo "demo: GET http://127.0.0.1:$port/ ->"
        echo "$page"
        exit 0
    fi
    sleep 0.1
done
echo "demo: the hello page did not answer on port $port" >&2
exit 1
