#!/usr/bin/env bash
# Source compatibility with upstream rust-vmm vfio-ioctls 0.10: crates/upstream-compat, a
# crate written against upstream's API alone, builds against our core through
# `[patch.crates-io]`, in three configurations. One line per configuration
# (`compat: ok default`, `compat: failed vfio_cdev`), then `compat: N passed, N failed`.
# A configuration fails when cargo fails, when cargo warns that the patch was not used
# (our version no longer satisfies `vfio-ioctls = "0.10"`), or when vfio-ioctls does not
# resolve to crates/vfio-ioctls. The default one also runs the crate's few tests.
set -uo pipefail
cd "$(dirname "$0")/.."

manifest=crates/upstream-compat/Cargo.toml
cargo_compat() {
  cargo "$@" --locked --manifest-path "$manifest" --target-dir target/upstream-compat
}

# Where vfio-ioctls resolves to: the path of its manifest when the patch applies.
resolved=$(cargo metadata --format-version 1 --locked --manifest-path "$manifest" 2>/dev/null \
  | node -e '
    const m = JSON.parse(require("fs").readFileSync(0, "utf8"));
    const v = m.packages.filter((p) => p.name === "vfio-ioctls");
    console.log(v.length === 1 && v[0].source === null ? v[0].manifest_path : "not patched");')
patched=0
[ "$resolved" = "$PWD/crates/vfio-ioctls/Cargo.toml" ] && patched=1
[ "$patched" -eq 1 ] || echo "compat: vfio-ioctls resolves to: ${resolved:-nothing} (not crates/vfio-ioctls)"

passed=0
failed=0
# name, then the cargo subcommand and its feature flags.
configurations=(
  "default|test"
  # The cdev API, with what the iommufd and migration branches add outside it.
  "vfio_cdev|check --features vfio_cdev,merged"
  "mshv|check --features mshv"
)
out=$(mktemp)
for c in "${configurations[@]}"; do
  name=${c%%|*}
  # shellcheck disable=SC2086 # the flags are words
  cargo_compat ${c#*|} >"$out" 2>&1
  rc=$?
  if [ "$rc" -eq 0 ] && [ "$patched" -eq 1 ] && ! grep -q 'was not used' "$out"; then
    echo "compat: ok $name"
    passed=$((passed + 1))
  else
    grep -E '^(error|warning)|was not used' -A5 "$out" | head -40
    echo "compat: failed $name"
    failed=$((failed + 1))
  fi
done
rm -f "$out"
echo "compat: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
