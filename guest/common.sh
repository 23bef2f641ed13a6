# shellcheck shell=bash disable=SC2034 # variables are used by the sourcing scripts
# Shared helpers for guest/setup.sh and guest/run.sh. Sourced, not executed.

GUEST_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${VFIO_GUEST_CACHE:-/var/cache/vfio-ioctls-guest}"

# Exit codes shared by the scripts.
EXIT_USAGE=2       # bad command line
EXIT_MISSING=3     # prerequisites missing / setup failed
EXIT_TIMEOUT=124   # guest did not finish within the timeout
EXIT_GUEST=125     # guest failed to boot or did not report an exit code

log() { printf '[guest] %s\n' "$*" >&2; }
die() {
    local code="$1"
    shift
    printf '[guest] error: %s\n' "$*" >&2
    exit "$code"
}

# Hash of everything that goes into the initramfs. A change in any of these
# files (module list, init script, ...) makes setup.sh rebuild it.
recipe_hash() {
    cat "$GUEST_DIR/setup.sh" "$GUEST_DIR/init.sh" "$GUEST_DIR/common.sh" |
        sha256sum | cut -c1-16
}

# Reads $CACHE/current (written by setup.sh), or the record FILE given (build-kernel.sh
# writes $CACHE/built/SERIES/current), into KVER, KPKG, VMLINUZ, INITRD, RECIPE.
# Returns non-zero if the cache is not ready for the current recipe.
cache_ready() {
    local f="${1:-$CACHE/current}" key val
    [[ -r "$f" ]] || return 1
    KVER='' KPKG='' VMLINUZ='' INITRD='' RECIPE=''
    while IFS='=' read -r key val; do
        case "$key" in
            KVER) KVER="$val" ;;
            KPKG) KPKG="$val" ;;
            VMLINUZ) VMLINUZ="$val" ;;
            INITRD) INITRD="$val" ;;
            RECIPE) RECIPE="$val" ;;
        esac
    done <"$f"
    [[ -n "$KVER" && -r "$VMLINUZ" && -r "$INITRD" ]] || return 1
    [[ "$RECIPE" == "$(recipe_hash)" ]] || return 1
    command -v qemu-system-x86_64 >/dev/null 2>&1 || return 1
    return 0
}
