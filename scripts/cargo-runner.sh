#!/usr/bin/env bash
# Cargo's runner (.cargo/config.toml): cargo calls it as `cargo-runner.sh BINARY ARGS...`
# for each test binary it runs. The core's kernel tests (crates/vfio-ioctls/tests/kernel.rs,
# binaries named kernel-<hash>) need VFIO and fail, never skip, without it: they run in
# the QEMU guest, with edu bound to vfio-pci, unless this already is the guest
# (VFIO_GUEST=1). Everything else, and `--list`, runs here as it is. The arguments and
# the exit status pass through (guest/run.sh's own: 124 timeout, 125 guest failure, 3
# prerequisites missing). Guest timeout: VFIO_GUEST_TIMEOUT, default 900 s.
set -euo pipefail

(($#)) || { echo "cargo-runner.sh: no binary given (cargo passes one)" >&2; exit 2; }

# BINARY ARGS...: whether a kernel test binary runs here: in the guest, or to list tests.
runs_here() {
    [[ "${VFIO_GUEST:-}" == 1 ]] && return 0
    local a
    for a in "${@:2}"; do [[ "$a" == --list ]] && return 0; done
    return 1
}

case "$(basename -- "$1")" in
    kernel-*)
        if ! runs_here "$@"; then
            exec bash "$(dirname -- "${BASH_SOURCE[0]}")/../guest/run.sh" \
                --timeout "${VFIO_GUEST_TIMEOUT:-900}" --bind-edu -- "$@"
        fi
        ;;
esac
exec "$@"
