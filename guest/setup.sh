#!/usr/bin/env bash
# guest/setup.sh — prepare everything guest/run.sh needs:
#   * Debian packages: qemu-system-x86 busybox-static cpio xz-utils zstd kmod
#   * a Debian bookworm kernel (linux-image-*-amd64, newest that apt knows),
#     fetched with `apt-get download` and unpacked with `dpkg -x` (not installed)
#   * an initramfs: static busybox + guest/init.sh + the needed kernel modules
# Everything lands in ${VFIO_GUEST_CACHE:-/var/cache/vfio-ioctls-guest}.
# Idempotent: when the cache matches the current recipe it returns at once.
#
# Usage: guest/setup.sh [--update] [--force] [-q]
#   --update  look for a newer kernel package even if the cache is ready
#   --force   rebuild the initramfs even if it exists
#   -q        less output
# Env: VFIO_GUEST_CACHE, VFIO_GUEST_KERNEL_PKG (pin e.g. linux-image-6.1.0-48-amd64)
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=common.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/common.sh"

# Modules loaded in the guest, in dependency order computed from modules.dep.
# Changing these lists changes the recipe hash and rebuilds the initramfs.
REQUIRED_MODULES=(virtio_pci 9pnet_virtio 9p vfio vfio_iommu_type1 vfio_pci)
OPTIONAL_MODULES=(kvm_amd kvm_intel)
PACKAGES=(qemu-system-x86 busybox-static cpio xz-utils zstd kmod)

UPDATE=0
FORCE=0
QUIET=0
while (($#)); do
    case "$1" in
        --update) UPDATE=1 ;;
        --force) FORCE=1 ;;
        -q | --quiet) QUIET=1 ;;
        -h | --help)
            awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
            exit 0
            ;;
        *) die "$EXIT_USAGE" "setup.sh: unknown argument '$1' (see --help)" ;;
    esac
    shift
done

say() { if [[ $QUIET == 0 ]]; then log "setup: $*"; fi; }
# A phase line is shown even with -q: a download or an install can take a minute, and
# silence that long reads as a hang.
phase() { log "setup: $*"; }
T0=$SECONDS

# ---------------------------------------------------------------- packages ---
pkg_installed() {
    [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" == "install ok installed" ]]
}
apt_updated=0
apt_update() {
    if [[ $apt_updated == 0 ]]; then
        phase "apt-get update"
        apt-get update -qq >&2 || die "$EXIT_MISSING" "apt-get update failed"
        apt_updated=1
    fi
}
ensure_packages() {
    local missing=() p
    for p in "${PACKAGES[@]}"; do pkg_installed "$p" || missing+=("$p"); done
    ((${#missing[@]})) || return 0
    if [[ $EUID != 0 ]]; then
        die "$EXIT_MISSING" "missing Debian packages: ${missing[*]} (run guest/setup.sh as root, or: apt-get install -y ${missing[*]})"
    fi
    phase "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2; then
        apt_update
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 ||
            die "$EXIT_MISSING" "apt-get install ${missing[*]} failed"
    fi
}

# A static busybox is what the initramfs runs; the dynamic `busybox` package
# conflicts with busybox-static and would break the guest.
check_busybox() {
    [[ -x /bin/busybox ]] || die "$EXIT_MISSING" "/bin/busybox missing (apt-get install busybox-static)"
    if ldd /bin/busybox >/dev/null 2>&1; then
        die "$EXIT_MISSING" "/bin/busybox is dynamically linked; install busybox-static"
    fi
}

# ------------------------------------------------------------------ kernel ---
resolve_kernel_pkg() {
    local pkg=''
    if [[ -n "${VFIO_GUEST_KERNEL_PKG:-}" ]]; then
        echo "$VFIO_GUEST_KERNEL_PKG"
        return
    fi
    # The bookworm meta package points at the newest ABI it knows about.
    pkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
        sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-amd64\)$/\1/p' | head -n1)
    if [[ -z "$pkg" ]]; then
        pkg=$(apt-cache pkgnames linux-image- 2>/dev/null |
            grep -E '^linux-image-[0-9]+\.[0-9]+\.[0-9]+-[0-9]+-amd64$' | sort -V | tail -n1 || true)
    fi
    echo "$pkg"
}

# ------------------------------------------------------------------- main ----
mkdir -p "$CACHE" || die "$EXIT_MISSING" "cannot create cache dir $CACHE"
[[ "$CACHE" != *[[:space:],]* ]] || die "$EXIT_MISSING" "cache dir '$CACHE' must not contain spaces or commas"
exec 9>"$CACHE/.lock"
flock -w 1200 9 || die "$EXIT_MISSING" "timed out waiting for the lock on $CACHE/.lock"

if [[ $UPDATE == 0 && $FORCE == 0 ]] && cache_ready && pkg_installed busybox-static; then
    say "ready: kernel $KVER, initramfs $INITRD"
    exit 0
fi

ensure_packages
check_busybox
for c in qemu-system-x86_64 cpio gzip xz zstd depmod dpkg apt-get flock; do
    command -v "$c" >/dev/null 2>&1 || die "$EXIT_MISSING" "command '$c' not found"
done

KPKG=$(resolve_kernel_pkg)
if [[ -z "$KPKG" ]]; then
    apt_update
    KPKG=$(resolve_kernel_pkg)
fi
if [[ -z "$KPKG" ]] && cache_ready; then
    say "apt knows no kernel package; keeping cached kernel $KVER"
    KPKG=linux-image-$KVER
fi
[[ -n "$KPKG" ]] || die "$EXIT_MISSING" "cannot find a linux-image-*-amd64 package with apt-cache"
KVER=${KPKG#linux-image-}
KDIR="$CACHE/kernel/$KVER"
RECIPE=$(recipe_hash)
INITRD="$CACHE/initramfs/initramfs-$KVER-$RECIPE.cpio.gz"
VMLINUZ="$KDIR/vmlinuz"

TMP=$(mktemp -d "$CACHE/tmp.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

if [[ ! -s "$KDIR/kernel.deb" || ! -s "$VMLINUZ" ]]; then
    phase "downloading the kernel package $KPKG (~70 MB)"
    (cd "$TMP" && apt-get download -qq -o APT::Sandbox::User=root "$KPKG" >&2) || {
        apt_update
        (cd "$TMP" && apt-get download -qq -o APT::Sandbox::User=root "$KPKG" >&2) ||
            die "$EXIT_MISSING" "apt-get download $KPKG failed"
    }
    deb=("$TMP"/*.deb)
    [[ -f "${deb[0]}" ]] || die "$EXIT_MISSING" "apt-get download produced no .deb"
    mkdir -p "$TMP/vm"
    dpkg-deb --fsys-tarfile "${deb[0]}" | tar -x -C "$TMP/vm" --wildcards './boot/vmlinuz-*'
    mkdir -p "$KDIR.new"
    cp "$TMP"/vm/boot/vmlinuz-* "$KDIR.new/vmlinuz"
    mv "${deb[0]}" "$KDIR.new/kernel.deb"
    rm -rf "$KDIR" "$TMP/vm"
    mv "$KDIR.new" "$KDIR"
fi

build_initramfs() {
    local tree="$TMP/tree" stage="$TMP/stage" moddir name path deps line kind m
    phase "unpacking $KPKG"
    dpkg -x "$KDIR/kernel.deb" "$tree"
    if [[ ! -d "$tree/lib/modules/$KVER" && -d "$tree/usr/lib/modules/$KVER" ]]; then
        mkdir -p "$tree/lib/modules"
        ln -s "../../usr/lib/modules/$KVER" "$tree/lib/modules/$KVER"
    fi
    moddir="$tree/lib/modules/$KVER"
    [[ -d "$moddir" ]] || die "$EXIT_MISSING" "no modules in $KPKG"
    depmod -b "$tree" "$KVER"

    declare -A MODPATH=() DEPS=() BUILTIN=() SEEN=()
    local order=()
    while IFS= read -r line; do
        path=${line%%:*}
        deps=${line#*:}
        name=${path##*/}
        name=${name%%.ko*}
        name=${name//-/_}
        MODPATH[$name]=$path
        DEPS[$name]=$deps
    done <"$moddir/modules.dep"
    if [[ -f "$moddir/modules.builtin" ]]; then
        while IFS= read -r path; do
            name=${path##*/}
            name=${name%%.ko*}
            BUILTIN[${name//-/_}]=1
        done <"$moddir/modules.builtin"
    fi

    visit() { # visit KIND NAME: append NAME after its dependencies
        local kind=$1 n=${2//-/_} d dn
        [[ -z "${SEEN[$n]:-}" ]] || return 0
        SEEN[$n]=1
        if [[ -z "${MODPATH[$n]:-}" ]]; then
            if [[ -n "${BUILTIN[$n]:-}" ]]; then
                return 0
            fi
            [[ $kind == opt ]] || die "$EXIT_MISSING" "module $n is neither in modules.dep nor built in ($KPKG)"
            say "optional module $n not available, skipped"
            return 0
        fi
        for d in ${DEPS[$n]}; do
            dn=${d##*/}
            dn=${dn%%.ko*}
            visit "$kind" "$dn"
        done
        order+=("$kind $n")
    }
    for m in "${REQUIRED_MODULES[@]}"; do visit req "$m"; done
    for m in "${OPTIONAL_MODULES[@]}"; do visit opt "$m"; done

    mkdir -p "$stage"/{bin,dev,etc,host,lib/modules,proc,run,sys,tmp}
    cp /bin/busybox "$stage/bin/busybox"
    local a
    for a in $(/bin/busybox --list); do
        [[ $a == busybox ]] || ln -sf busybox "$stage/bin/$a"
    done
    install -m 0755 "$GUEST_DIR/init.sh" "$stage/init"
    mknod -m 0600 "$stage/dev/console" c 5 1 ||
        die "$EXIT_MISSING" "mknod failed (setup.sh must run as root to build the initramfs)"
    : >"$stage/etc/modules.load"
    for line in "${order[@]}"; do
        kind=${line%% *}
        name=${line#* }
        path="$moddir/${MODPATH[$name]}"
        case "$path" in
            *.ko) cp "$path" "$stage/lib/modules/$name.ko" ;;
            *.ko.xz) xz -dc "$path" >"$stage/lib/modules/$name.ko" ;;
            *.ko.zst) zstd -qdc "$path" >"$stage/lib/modules/$name.ko" ;;
            *.ko.gz) gzip -dc "$path" >"$stage/lib/modules/$name.ko" ;;
            *) die "$EXIT_MISSING" "unknown module file type: $path" ;;
        esac
        echo "$kind $name" >>"$stage/etc/modules.load"
    done
    say "modules: $(tr '\n' ' ' <"$stage/etc/modules.load")"
    phase "building the initramfs"

    mkdir -p "$CACHE/initramfs"
    (cd "$stage" && find . -print0 | LC_ALL=C sort -z |
        cpio --null -o -H newc --owner=0:0 --quiet) | gzip -n -6 >"$INITRD.tmp"
    mv "$INITRD.tmp" "$INITRD"
    rm -rf "$tree" "$stage"
}

if [[ $FORCE == 1 || ! -s "$INITRD" ]]; then
    build_initramfs
fi

cat >"$CACHE/current.tmp" <<EOF
KVER=$KVER
KPKG=$KPKG
VMLINUZ=$VMLINUZ
INITRD=$INITRD
RECIPE=$RECIPE
EOF
mv "$CACHE/current.tmp" "$CACHE/current"

# Drop initramfs images and kernels that are no longer current.
find "$CACHE/initramfs" -mindepth 1 -maxdepth 1 ! -name "${INITRD##*/}" -exec rm -f {} +
find "$CACHE/kernel" -mindepth 1 -maxdepth 1 ! -name "$KVER" -exec rm -rf {} +
find "$CACHE" -mindepth 1 -maxdepth 1 -name 'tmp.*' ! -path "$TMP" -mmin +60 -exec rm -rf {} +

phase "ready in $((SECONDS - T0))s: kernel $KVER ($KPKG), initramfs $INITRD"
