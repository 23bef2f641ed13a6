#!/usr/bin/env bash
# `npm run demo`: the user-mode drivers for edu and NVMe (examples/edu-driver.ts,
# examples/nvme-driver.ts) end to end in the QEMU guest. Installs and builds what is
# missing or stale, prepares the guest, runs both drivers there in one boot and exits 0
# when both pass, 1 when one fails (124: guest timeout; see guest/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS

[ -d node_modules ] || { echo "demo: installing dependencies (npm install)"; npm install --no-audit --no-fund; }

# Rebuild when the addon or dist/ is missing or older than its sources.
newer() { [ -n "$(find "${@:2}" -newer "$1" -type f -print -quit 2>/dev/null)" ]; }
stale() {
    local nodes=(native/vfio-ioctls.*.node) node
    node=${nodes[0]}
    [ -f "$node" ] && [ -f dist/index.js ] && [ -f dist/cli.js ] || return 0
    newer "$node" src crates build.rs Cargo.toml Cargo.lock || newer dist/index.js ts tsconfig.json
}
if stale; then
    echo "demo: building (npm run build:debug)"
    npm run build:debug
fi

bash guest/setup.sh -q

set +e
# Both drivers in one boot; the NVMe one runs even when edu fails. Exit 1 when either fails.
guest/run.sh --timeout 300 -- bash -c '
  rc=0
  node --import tsx examples/edu-driver.ts || rc=1
  echo
  node --import tsx examples/nvme-driver.ts || rc=1
  exit $rc'
rc=$?
set -e
echo "demo: exit $rc after $((SECONDS - start)) s"
exit "$rc"
