#!/usr/bin/env bash
# `npm run test:registry`: the package as users get it. Builds the release binary,
# packs vfio-ioctls and vfio-ioctls-linux-x64-gnu, publishes both to a private npm
# registry (verdaccio, no uplinks) on 127.0.0.1, installs vfio-ioctls from it into a
# fresh project with cargo/rustc off the PATH, and uses it there: require, import,
# tsc (also as a strict consumer with `"types": []`), the CLI, the licence notices, an
# install as on macOS (the missing-binary message), and the installed package's
# examples/edu-driver.ts and examples/nvme-driver.ts in its own `vfio-ioctls sandbox`
# (the QEMU guest the package ships, with --device edu and --device nvme). Before publishing, the packed tarball goes through attw (are the types
# wrong) and publint, offline (in a network namespace of its own where it can make one).
# Prints `ok - <name>` / `not ok - <name>` per check, ends with
# `registry: N passed, N failed`, exits non-zero on any failure. The checks and helpers
# that need Node are subcommands of scripts/test-registry/checks.mjs; this script keeps
# the build, pack, registry and npm orchestration and the counting.
#
# verdaccio is installed on first use into scripts/registry/node_modules (its own
# package.json and lock, with the node-fetch override it needs), not into the root
# package: `npm ci` / `npm install` of the project stay as they were.
# Needs: Linux x64 glibc host, cargo (for the release build), the root devDependencies
# (napi, tsc, tsx), the guest harness (guest/run.sh). ~1-2 min when the build is current.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
start=$SECONDS

passed=0
failed=0
ok() { echo "ok - $1"; passed=$((passed + 1)); }
not_ok() {
    echo "not ok - $1"
    failed=$((failed + 1))
    if [ -n "${2:-}" ]; then printf '%s\n' "$2" | tail -n 40 | sed 's/^/#   /'; fi
}
# check NAME CMD...: runs CMD (output captured, shown on failure).
check() {
    local name=$1 out
    shift
    if out=$("$@" 2>&1); then ok "$name"; else not_ok "$name" "$out"; fi
}
finish() {
    echo "# $((SECONDS - start)) s"
    echo "registry: $passed passed, $failed failed"
    [ "$failed" -eq 0 ]
    exit
}
# A step the rest depends on failed: count it and stop.
bail() { not_ok "$1" "${2:-}"; finish; }

WORK=
REGISTRY_PID=
PLACED_NODE=
cleanup() {
    if [ -n "$REGISTRY_PID" ]; then
        kill "$REGISTRY_PID" 2>/dev/null
        wait "$REGISTRY_PID" 2>/dev/null
    fi
    [ -n "$PLACED_NODE" ] && rm -f "$PLACED_NODE"
    [ -n "$WORK" ] && rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

CHECKS=$ROOT/scripts/test-registry/checks.mjs
VERSION=$(node "$CHECKS" version "$ROOT")
BINARY=vfio-ioctls.linux-x64-gnu.node
PLATFORM_DIR=npm/linux-x64-gnu

# The host must be able to load the x64 glibc binary.
# (ldd's output is captured first: `ldd | head | grep -q` can die of SIGPIPE under pipefail.)
ldd_version=$(ldd --version 2>&1 || true)
[ "$(uname -s)-$(uname -m)" = Linux-x86_64 ] && grep -qiE 'glibc|gnu libc' <<<"${ldd_version%%$'\n'*}" \
    || bail "host is Linux x86_64 with glibc" "$(uname -a)"

# /tmp, not $TMPDIR: the guest sees the host's /tmp at the same path.
WORK=$(mktemp -d /tmp/vfio-ioctls-registry.XXXXXX) || bail "temporary directory"
mkdir -p "$WORK/build" "$WORK/pack" "$WORK/registry" "$WORK/app" "$WORK/app-darwin" "$WORK/cache"

# --- tools --------------------------------------------------------------------
TOOLS=scripts/registry
if [ ! -x "$TOOLS/node_modules/.bin/verdaccio" ] || [ "$TOOLS/package.json" -nt "$TOOLS/node_modules/.package-lock.json" ] \
    || [ "$TOOLS/package-lock.json" -nt "$TOOLS/node_modules/.package-lock.json" ]; then
    echo "# installing verdaccio into $TOOLS/node_modules"
    out=$(npm install --prefix "$TOOLS" --no-audit --no-fund 2>&1) || bail "install verdaccio" "$out"
fi
[ -x node_modules/.bin/tsc ] && [ -x node_modules/.bin/napi ] && [ -f node_modules/tsx/package.json ] \
    && [ -x node_modules/.bin/attw ] && [ -x node_modules/.bin/publint ] \
    || bail "root devDependencies installed (npm install)"

# --- build: release binary (cargo skips it when current) and dist/ --------------
out=$(node_modules/.bin/napi build --platform --release -o "$WORK/build" --js binding.cjs --dts binding.d.ts 2>&1) \
    || bail "release build (napi build --platform --release)" "$out"
[ -f "$WORK/build/$BINARY" ] || bail "release build produced $BINARY" "$(ls -l "$WORK/build")"
size=$(stat -c %s "$WORK/build/$BINARY")
echo "# $BINARY (release, stripped): $size bytes"
if [ "$size" -lt $((2 * 1024 * 1024)) ]; then ok "release binary under 2 MB ($size bytes)"; else not_ok "release binary under 2 MB ($size bytes)"; fi
# What the root package ships must match the binary: the loader and types napi generates.
check "native/binding.cjs and binding.d.ts are current" \
    bash -c "diff -u native/binding.cjs '$WORK/build/binding.cjs' && diff -u native/binding.d.ts '$WORK/build/binding.d.ts'"
out=$(node_modules/.bin/tsc -p . 2>&1) || bail "tsc -p . (dist/)" "$out"
check "esm/index.mjs and esm/testing.mjs export what dist/index.js and dist/testing.js export" node "$CHECKS" esm-exports "$ROOT"
check "license files in npm/* are the root's" bash -c 'for d in npm/*/; do cmp LICENSE-APACHE "$d/LICENSE-APACHE" && cmp LICENSE-BSD-3-Clause "$d/LICENSE-BSD-3-Clause" || exit 1; done'
check "npm/* versions match the root's optionalDependencies ($VERSION)" node "$CHECKS" platform-versions "$ROOT"
check "THIRD-PARTY-NOTICES.md (root and npm/*) is current for the crates linked (scripts/third-party-notices.mjs --check)" \
    node scripts/third-party-notices.mjs --check

# --- pack ----------------------------------------------------------------------
cp "$WORK/build/$BINARY" "$PLATFORM_DIR/$BINARY" || bail "copy $BINARY into $PLATFORM_DIR"
PLACED_NODE=$ROOT/$PLATFORM_DIR/$BINARY
pack() { # DIR -> prints the tarball path; the file list goes to $WORK/pack/<name>.files
    local json
    json=$(cd "$1" && npm pack --json --pack-destination "$WORK/pack" 2>/dev/null) || return 1
    node "$CHECKS" pack-files "$json" "$WORK/pack"
}
ROOT_TGZ=$(pack .) || bail "npm pack (vfio-ioctls)"
PLATFORM_TGZ=$(pack "$PLATFORM_DIR") || bail "npm pack (vfio-ioctls-linux-x64-gnu)"
check "vfio-ioctls tarball holds only what users need" bash -c "
    f='$WORK/pack/vfio-ioctls.files'
    bad=\$(grep -vE '^(dist/[A-Za-z0-9_-]+\.(js|d\.ts)|esm/(index|testing)\.(mjs|d\.mts)|native/binding\.(cjs|d\.ts)|examples/(edu|nvme)-driver\.ts|guest/(run|setup|init|common|build-kernel)\.sh|(README|CHANGELOG|CONTRIBUTING|THIRD-PARTY-NOTICES)\.md|LICENSE-APACHE|LICENSE-BSD-3-Clause|package\.json)\$' \"\$f\")
    [ -z \"\$bad\" ] || { echo \"unexpected: \$bad\"; exit 1; }
    for need in dist/index.js dist/index.d.ts dist/cli.js dist/testing.js dist/testing.d.ts esm/index.mjs esm/index.d.mts esm/testing.mjs esm/testing.d.mts native/binding.cjs native/binding.d.ts examples/edu-driver.ts examples/nvme-driver.ts guest/run.sh guest/setup.sh guest/init.sh guest/common.sh guest/build-kernel.sh LICENSE-APACHE LICENSE-BSD-3-Clause THIRD-PARTY-NOTICES.md CHANGELOG.md; do
        grep -qx \"\$need\" \"\$f\" || { echo \"missing: \$need\"; exit 1; }
    done"
check "vfio-ioctls-linux-x64-gnu tarball: the binary, licenses, third-party notices, README" \
    diff -u <(printf '%s\n' LICENSE-APACHE LICENSE-BSD-3-Clause README.md THIRD-PARTY-NOTICES.md package.json "$BINARY") "$WORK/pack/vfio-ioctls-linux-x64-gnu.files"

# The packed tarball as TypeScript and bundlers resolve it: attw (the analysis
# `attw --pack` makes, here of the tarball just packed; no @types look-up) and publint
# (its warnings count as errors; it must say "All good!"). Neither needs the network:
# where this shell may make one (root), they run in a network namespace with none.
offline() {
    if unshare -n true 2>/dev/null; then unshare -n "$@"; else "$@"; fi
}
where=$(unshare -n true 2>/dev/null && echo "no network" || echo "network namespace unavailable")
check "attw: no problems in the packed vfio-ioctls (node10, node16 CJS and ESM, bundler; $where)" \
    offline node_modules/.bin/attw "$ROOT_TGZ" --no-definitely-typed --no-color --no-emoji
publint_all_good() {
    local out
    out=$(offline node_modules/.bin/publint run "$ROOT_TGZ" --strict 2>&1) || { printf '%s\n' "$out"; return 1; }
    printf '%s\n' "$out"
    grep -q 'All good' <<<"$out"
}
check "publint: all good for the packed vfio-ioctls, warnings as errors ($where)" publint_all_good

# --- registry ------------------------------------------------------------------
PORT=$(node "$CHECKS" free-port)
REGISTRY=http://127.0.0.1:$PORT/
cp "$TOOLS/config.yaml" "$WORK/registry/config.yaml"
"$TOOLS/node_modules/.bin/verdaccio" --config "$WORK/registry/config.yaml" --listen "127.0.0.1:$PORT" \
    >"$WORK/registry/verdaccio.log" 2>&1 &
REGISTRY_PID=$!
node "$CHECKS" wait-registry "$REGISTRY" || bail "verdaccio answers on 127.0.0.1:$PORT" "$(cat "$WORK/registry/verdaccio.log")"
ok "verdaccio answers on 127.0.0.1:$PORT"

TOKEN=$(node "$CHECKS" add-user "$REGISTRY" 2>&1) || bail "create a registry user" "$TOKEN"

# From here npm sees only this registry: no inherited npm_config_* (npm run exports the
# outer ones), its own user/global config and cache, and a dead proxy for any other host.
while read -r v; do unset "$v"; done < <(compgen -e | grep -i '^npm_config_')
cat >"$WORK/npmrc" <<EOF
registry=$REGISTRY
//127.0.0.1:$PORT/:_authToken=$TOKEN
proxy=http://127.0.0.1:9/
https-proxy=http://127.0.0.1:9/
noproxy=127.0.0.1
audit=false
fund=false
update-notifier=false
EOF
: >"$WORK/npmrc-global"
export npm_config_userconfig=$WORK/npmrc npm_config_globalconfig=$WORK/npmrc-global npm_config_cache=$WORK/cache

check "publish vfio-ioctls-linux-x64-gnu@$VERSION" npm publish "$PLATFORM_TGZ" --registry "$REGISTRY"
check "publish vfio-ioctls@$VERSION" npm publish "$ROOT_TGZ" --registry "$REGISTRY"

# --- install in a fresh project, without a Rust toolchain --------------------------
NOCARGO_PATH=
IFS=: read -ra dirs <<<"$PATH"
for d in "${dirs[@]}"; do
    [ -n "$d" ] && [ ! -e "$d/cargo" ] && [ ! -e "$d/rustc" ] && NOCARGO_PATH=${NOCARGO_PATH:+$NOCARGO_PATH:}$d
done
if PATH=$NOCARGO_PATH command -v cargo >/dev/null || PATH=$NOCARGO_PATH command -v rustc >/dev/null; then
    bail "cargo and rustc off the PATH" "still found: $(PATH=$NOCARGO_PATH command -v cargo rustc)"
fi
PATH=$NOCARGO_PATH command -v node >/dev/null || bail "node still on the PATH without cargo"
ok "cargo and rustc off the PATH"
export PATH=$NOCARGO_PATH

cd "$WORK/app"
printf '{ "name": "registry-test-app", "version": "1.0.0", "private": true }\n' >package.json
out=$(npm install vfio-ioctls --registry "$REGISTRY" 2>&1) || bail "npm install vfio-ioctls (from 127.0.0.1:$PORT)" "$out"
ok "npm install vfio-ioctls (from 127.0.0.1:$PORT)"
# The checks of the installed package run from a copy of checks.mjs in the app, so that
# 'vfio-ioctls' resolves (require and import) from the app's node_modules, as for a
# user's module; from the repository it would resolve to the repository itself.
cp "$CHECKS" checks.mjs || bail "copy checks.mjs into the app"
check "installed vfio-ioctls@$VERSION + vfio-ioctls-linux-x64-gnu only, all from the test registry" \
    node checks.mjs installed "$VERSION" "$REGISTRY"

check "require('vfio-ioctls'): Container, features() = kvm,mshv,vfio_cdev, binary from vfio-ioctls-linux-x64-gnu" node checks.mjs require
check "import 'vfio-ioctls' (ESM): named + default exports, same module as require" node checks.mjs import

cat >tsconfig.json <<EOF
{
  "compilerOptions": {
    "module": "nodenext", "moduleResolution": "nodenext", "target": "ES2022",
    "lib": ["ES2022", "ESNext.Disposable"], "strict": true, "noEmit": true,
    "types": ["node"], "typeRoots": ["$ROOT/node_modules/@types"]
  },
  "files": ["check.mts", "check.cts"]
}
EOF
for ext in mts cts; do
    cat >check.$ext <<'EOF'
import { Container, Device, DmaBuffer, Interrupts, features, VfioError, ErrorCode, RegionIndex, sysfs, type PciDevice } from 'vfio-ioctls'

const kinds: string[] = features()
// @ts-expect-error features() is string[], not a number (fails if the types were any)
const wrong: number = features()
const open = (address: string): void => {
  using container = new Container()
  using device = container.openDevice(address)
  const bar0 = device.regions[RegionIndex.BAR0]
  void bar0
}
const devices: PciDevice[] = sysfs.listDevices()
const code: string = ErrorCode.UNSUPPORTED
const isVfio = (e: unknown): e is VfioError => e instanceof VfioError
let dma: DmaBuffer | undefined
// Handles come from their owners (container.openDevice(), ...): the constructors are private.
// @ts-expect-error Device's constructor is private
const noDevice = (): Device => new Device()
// @ts-expect-error DmaBuffer's constructor is private
const noDma = (): DmaBuffer => new DmaBuffer()
// @ts-expect-error Interrupts' constructor is private
const noIrq = (): Interrupts => new Interrupts()
export { kinds, wrong, open, devices, code, isVfio, dma, noDevice, noDma, noIrq }
EOF
done
check "types resolve: tsc --noEmit (import from .mts and .cts, nodenext)" "$ROOT/node_modules/.bin/tsc" -p .

# The types stand on their own: a strict consumer that loads no global types itself
# (`"types": []`: only what the package's declarations reference, @types/node here), with
# noUncheckedIndexedAccess, from ESM and CommonJS. Compile only.
mkdir -p standalone
cat >standalone/tsconfig.json <<EOF
{
  "compilerOptions": {
    "module": "nodenext", "moduleResolution": "nodenext", "target": "ES2022",
    "strict": true, "noEmit": true, "noUncheckedIndexedAccess": true,
    "types": [], "typeRoots": ["$ROOT/node_modules/@types"]
  },
  "files": ["use.mts", "use.cts"]
}
EOF
for ext in mts cts; do
    cat >standalone/use.$ext <<'EOF'
import { Container, RegionIndex } from 'vfio-ioctls'
const c = new Container()
const d = c.openDevice('0000:00:03.0')
d.regions[RegionIndex.BAR0].map()
EOF
done
check "a strict TypeScript $("$ROOT/node_modules/.bin/tsc" --version | sed 's/^Version //') consumer compiles (types: [], noUncheckedIndexedAccess, nodenext; .mts and .cts)" \
    "$ROOT/node_modules/.bin/tsc" -p standalone
check "THIRD-PARTY-NOTICES.md installed with vfio-ioctls and vfio-ioctls-linux-x64-gnu" node checks.mjs notices "$ROOT"

out=$(npx vfio-ioctls --version 2>&1)
if [ "$out" = "$VERSION" ]; then ok "npx vfio-ioctls --version = $VERSION"; else not_ok "npx vfio-ioctls --version = $VERSION" "$out"; fi
check "npx vfio-ioctls list" bash -c 'out=$(npx vfio-ioctls list) && printf "%s\n" "$out" | head -n 1 | grep -q ADDRESS || { printf "%s\n" "$out"; exit 1; }'

# --- as on macOS: installs, imports, says on use that VFIO is Linux-only -----------
cd "$WORK/app-darwin"
printf '{ "name": "registry-test-darwin", "version": "1.0.0", "private": true }\n' >package.json
cp "$CHECKS" checks.mjs || bail "copy checks.mjs into the darwin app"
# npm refuses (EBADPLATFORM) a non-optional package whose os/cpu/libc exclude the machine,
# and --os only simulates the optional-dependency filter: check the fields directly.
check "npm install --os=darwin --cpu=arm64: installs, no platform package, first call throws ERR_VFIO_UNSUPPORTED naming vfio-ioctls-linux-x64-gnu" bash -c "
    node checks.mjs no-platform-fields '$WORK/app/node_modules/vfio-ioctls/package.json' || exit 1
    npm install vfio-ioctls --os=darwin --cpu=arm64 --registry '$REGISTRY' || exit 1
    ls node_modules
    [ -d node_modules/vfio-ioctls ] && ! ls -d node_modules/vfio-ioctls-* 2>/dev/null || exit 1
    node checks.mjs unsupported"

# --- the examples from the installed package, in its own sandbox ---------------------
# As a user runs a driver: the app's node_modules/.bin/vfio-ioctls sandbox boots the
# guest the package ships (guest/run.sh from node_modules) with only the device asked
# for, bound to vfio-pci, and runs node there in this directory (tsx is the repo's: the
# app does not install it). One check per example.
cd "$WORK/app"
TSX=$(node "$CHECKS" resolve tsx)
# sandbox_example NAME DEVICE: examples/NAME-driver.ts of the installed package, its
# import rewritten to 'vfio-ioctls', in `vfio-ioctls sandbox --device DEVICE`.
sandbox_example() {
    local name=$1 device=$2 file=$1-driver.ts log=$WORK/$1.log rc=0 try
    local run=(node_modules/.bin/vfio-ioctls sandbox --device "$device" --timeout 300 -- node --import "$TSX" "$file")
    sed "s#from '\.\.'#from 'vfio-ioctls'#" "node_modules/vfio-ioctls/examples/$file" >"$file"
    if ! grep -q "from 'vfio-ioctls'" "$file" || grep -q "from '\.\.'" "$file"; then
        not_ok "rewrite examples/$file to import from 'vfio-ioctls'"
        return
    fi
    for try in 1 2; do
        echo "# ${run[*]} (in $PWD)"
        "${run[@]}" 2>&1 | tee "$log" | sed 's/^/#   /'
        rc=${PIPESTATUS[0]}
        # Node has been killed by SIGILL (132) or SIGSEGV (139) under TCG before it printed
        # anything, and never again in reruns: an emulator flake, not a result. One more
        # boot tells which; a second failure, or any failure after the example started,
        # fails the check.
        [ "$try" = 1 ] && { [ "$rc" -eq 132 ] || [ "$rc" -eq 139 ]; } && ! grep -q '^\[1\]' "$log" || break
        echo "# node died by signal $((rc - 128)) before the example started (a TCG flake): booting again"
    done
    if [ "$rc" -eq 0 ] && grep -q '^PASS' "$log"; then
        ok "$name example from the installed package, in vfio-ioctls sandbox --device $device"
    else
        not_ok "$name example from the installed package, in vfio-ioctls sandbox --device $device (exit $rc)"
    fi
}
sandbox_example edu edu
sandbox_example nvme nvme

# --- the same edu driver against the mock, on the host, without root -------------------
# vfio-ioctls/testing from the installed package: a preload installs MockSystem with
# mockEdu() and the driver above runs unchanged: no /dev/vfio, no QEMU, as uid nobody
# when this runs as root (the mock needs no privilege).
cat >use-mock.mjs <<'EOF'
import { MockSystem, mockEdu } from 'vfio-ioctls/testing'
MockSystem.install().addDevice(mockEdu())
EOF
unprivileged=()
as_uid=$(id -u)
if [ "$as_uid" = 0 ]; then
    chmod a+rx "$WORK" "$WORK/app"
    unprivileged=(setpriv --reuid=65534 --regid=65534 --clear-groups --)
    as_uid=65534
fi
check "the same edu example against the mock (vfio-ioctls/testing) on the host, as uid $as_uid" \
    bash -c '"$@" 2>&1 | tee /dev/stderr | grep -q "^PASS"' _ "${unprivileged[@]}" env HOME=/tmp node --import "$TSX" --import ./use-mock.mjs edu-driver.ts

echo "# installed: vfio-ioctls $(du -sk node_modules/vfio-ioctls | cut -f1) KiB, vfio-ioctls-linux-x64-gnu $(du -sk node_modules/vfio-ioctls-linux-x64-gnu | cut -f1) KiB ($(du -sb node_modules/vfio-ioctls-linux-x64-gnu | cut -f1) bytes)"
cd "$ROOT"
finish
