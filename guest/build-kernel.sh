#!/usr/bin/env bash
# guest/build-kernel.sh — build the guest's second kernel: Debian's linux-source-6.12
# (bookworm-backports) with iommufd, VFIO device cdevs and the mtty sample mdev driver
# built in (Debian's own kernels have neither IOMMUFD nor VFIO_DEVICE_CDEV), and an
# initramfs for it (busybox and guest/init.sh; no modules: everything is built in).
# Built at most once per machine: the result is cached in
#   ${VFIO_GUEST_CACHE:-/var/cache/vfio-ioctls-guest}/built/6.12/
# keyed by a hash of the config lists below. ~10 minutes on 2 cores.
#
# Usage: guest/build-kernel.sh [-q] [--force]
#   -q       less output (the build's progress is still shown, a line a minute)
#   --force  rebuild the kernel even if the cached one matches
# Writes $CACHE/built/6.12/current (KVER, VMLINUZ, INITRD, RECIPE) for guest/run.sh --kernel 6.12.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=common.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/common.sh"

SERIES=6.12
SOURCE_PKG=linux-source-$SERIES
BUILD_PACKAGES=(bc bison flex libelf-dev libssl-dev xz-utils make gcc)
# Built in (=y). What the 6.1 guest loads as modules, plus iommufd and the cdev, the
# mdev core and its mtty sample (it implements migration v2), and PCI hotplug (hotedu).
CONFIG_Y=(
    IOMMUFD VFIO VFIO_GROUP VFIO_CONTAINER VFIO_IOMMU_TYPE1 VFIO_DEVICE_CDEV VFIO_PCI
    VFIO_PCI_CORE VFIO_VIRQFD VFIO_MDEV SAMPLES SAMPLE_VFIO_MDEV_MTTY
    INTEL_IOMMU IRQ_REMAP PCI_MSI PCI_IOV PCIEPORTBUS HOTPLUG_PCI
    HOTPLUG_PCI_PCIE HOTPLUG_PCI_ACPI ACPI_PCI_SLOT
    NET_9P NET_9P_VIRTIO 9P_FS 9P_FS_POSIX_ACL VIRTIO_PCI VIRTIO_BLK DEVTMPFS
    BLK_DEV_INITRD KVM KVM_AMD KVM_INTEL HUGETLBFS TMPFS TMPFS_POSIX_ACL EVENTFD
    SERIAL_8250 SERIAL_8250_CONSOLE
)
# Off: the type1 container stays real (/dev/vfio/vfio is vfio's own); iommufd's
# container compatibility is reached through /dev/iommu, which every iommufd serves.
# No NVMe driver: the guest's NVMe stays unbound for vfio-pci, as on 6.1.
CONFIG_N=(IOMMUFD_VFIO_CONTAINER BLK_DEV_NVME DEBUG_INFO DEBUG_INFO_BTF MODULE_SIG WERROR)

QUIET=0
FORCE=0
while (($#)); do
    case "$1" in
        -q | --quiet) QUIET=1 ;;
        --force) FORCE=1 ;;
        -h | --help)
            awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
            exit 0
            ;;
        *) die "$EXIT_USAGE" "build-kernel.sh: unknown argument '$1' (see --help)" ;;
    esac
    shift
done
say() { if [[ $QUIET == 0 ]]; then log "build-kernel: $*"; fi; }
phase() { log "build-kernel: $*"; }
T0=$SECONDS

OUT="$CACHE/built/$SERIES"
KRECIPE=$(printf '%s\n' "$SOURCE_PKG" "${CONFIG_Y[@]}" -- "${CONFIG_N[@]}" | sha256sum | cut -c1-16)
IRECIPE=$(recipe_hash)
mkdir -p "$OUT"
exec 8>"$OUT/.lock"
flock -w 3600 8 || die "$EXIT_MISSING" "timed out waiting for $OUT/.lock (another build?)"

VMLINUZ="$OUT/vmlinuz-$KRECIPE"
INITRD="$OUT/initramfs-$IRECIPE.cpio.gz"

# apt with its own list of bookworm-backports, kept in the cache: the machine's sources
# are left as they are.
APT_DIR="$CACHE/apt-backports"
APT_OPTS=(-o "Dir::Etc::SourceList=$APT_DIR/sources.list" -o Dir::Etc::SourceParts=/dev/null
    -o "Dir::State::Lists=$APT_DIR/lists" -o "Dir::Cache=$APT_DIR/cache" -o APT::Sandbox::User=root)
fetch_source() {
    mkdir -p "$APT_DIR/lists/partial" "$APT_DIR/cache/archives/partial"
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm-backports main" \
        >"$APT_DIR/sources.list"
    phase "apt-get update (bookworm-backports, for $SOURCE_PKG)"
    apt-get "${APT_OPTS[@]}" update -qq >&2 || die "$EXIT_MISSING" "apt-get update of bookworm-backports failed"
    phase "downloading $SOURCE_PKG (~150 MB)"
    (cd "$1" && apt-get "${APT_OPTS[@]}" download -qq "$SOURCE_PKG" >&2) ||
        die "$EXIT_MISSING" "apt-get download $SOURCE_PKG failed"
}

ensure_build_packages() {
    local missing=() p
    for p in "${BUILD_PACKAGES[@]}"; do
        [[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" == "install ok installed" ]] || missing+=("$p")
    done
    ((${#missing[@]})) || return 0
    [[ $EUID == 0 ]] || die "$EXIT_MISSING" "missing build packages: ${missing[*]} (apt-get install -y ${missing[*]})"
    phase "installing build packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 || {
        apt-get update -qq >&2 || true
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 ||
            die "$EXIT_MISSING" "apt-get install ${missing[*]} failed"
    }
}

build_kernel() {
    local tmp deb tarball src cfg opt missing=() jobs log pid n
    ensure_build_packages
    tmp=$(mktemp -d "$OUT/tmp.XXXXXX")
    # shellcheck disable=SC2064 # expand now: the trap must remove this build's tree
    trap "rm -rf '$tmp'" EXIT
    fetch_source "$tmp"
    deb=("$tmp"/*.deb)
    [[ -f "${deb[0]}" ]] || die "$EXIT_MISSING" "apt-get download produced no .deb"
    phase "unpacking ${deb[0]##*/}"
    dpkg-deb --fsys-tarfile "${deb[0]}" | tar -x -C "$tmp" --wildcards './usr/src/linux-source-*.tar.*'
    rm -f "${deb[0]}"
    tarball=("$tmp"/usr/src/linux-source-*.tar.*)
    tar -x -C "$tmp" -f "${tarball[0]}"
    rm -f "${tarball[0]}"
    src=("$tmp"/linux-source-*/)
    src=${src[0]%/}
    [[ -f "$src/Makefile" ]] || die "$EXIT_MISSING" "no kernel tree in $SOURCE_PKG"

    phase "configuring $(make -s -C "$src" kernelversion)"
    make -s -C "$src" defconfig kvm_guest.config >/dev/null
    for opt in "${CONFIG_Y[@]}"; do "$src/scripts/config" --file "$src/.config" --enable "$opt"; done
    for opt in "${CONFIG_N[@]}"; do "$src/scripts/config" --file "$src/.config" --disable "$opt"; done
    "$src/scripts/config" --file "$src/.config" --set-str LOCALVERSION "-vfio"
    make -s -C "$src" olddefconfig >/dev/null
    cfg="$src/.config"
    for opt in "${CONFIG_Y[@]}"; do grep -qx "CONFIG_$opt=y" "$cfg" || missing+=("$opt"); done
    ((${#missing[@]} == 0)) || die "$EXIT_MISSING" "the kernel config lost: ${missing[*]} (a dependency is off)"

    jobs=$(nproc)
    log="$tmp/build.log"
    phase "building bzImage with make -j$jobs (about 10 minutes on 2 cores; a line a minute)"
    make -C "$src" -j"$jobs" bzImage >"$log" 2>&1 &
    pid=$!
    while kill -0 "$pid" 2>/dev/null; do
        sleep 60 &
        wait $! || true
        kill -0 "$pid" 2>/dev/null || break
        n=$(grep -c '^  CC ' "$log" || true)
        phase "building: $((SECONDS - T0))s, $n files compiled"
    done
    if ! wait "$pid"; then
        tail -n 40 "$log" >&2
        die "$EXIT_MISSING" "the kernel build failed (the last lines of its log are above)"
    fi
    cp "$src/arch/x86/boot/bzImage" "$VMLINUZ.tmp"
    cp "$cfg" "$OUT/config-$KRECIPE"
    make -s -C "$src" kernelrelease >"$OUT/release-$KRECIPE"
    mv "$VMLINUZ.tmp" "$VMLINUZ"
    rm -rf "$tmp"
    trap - EXIT
}

# The initramfs: busybox and init.sh, an empty module list.
build_initramfs() {
    local stage a
    stage=$(mktemp -d "$OUT/stage.XXXXXX")
    mkdir -p "$stage"/{bin,dev,etc,host,lib/modules,proc,run,sys,tmp}
    cp /bin/busybox "$stage/bin/busybox"
    for a in $(/bin/busybox --list); do
        [[ $a == busybox ]] || ln -sf busybox "$stage/bin/$a"
    done
    install -m 0755 "$GUEST_DIR/init.sh" "$stage/init"
    mknod -m 0600 "$stage/dev/console" c 5 1 || die "$EXIT_MISSING" "mknod failed (run as root)"
    : >"$stage/etc/modules.load"
    (cd "$stage" && find . -print0 | LC_ALL=C sort -z |
        cpio --null -o -H newc --owner=0:0 --quiet) | gzip -n -6 >"$INITRD.tmp"
    mv "$INITRD.tmp" "$INITRD"
    rm -rf "$stage"
}

if [[ $FORCE == 1 || ! -s "$VMLINUZ" ]]; then
    build_kernel
else
    say "kernel cached: $VMLINUZ"
fi
if [[ ! -s "$INITRD" ]]; then
    # guest/setup.sh provides busybox-static and cpio.
    [[ -x /bin/busybox ]] && command -v cpio >/dev/null || bash "$GUEST_DIR/setup.sh" -q
    build_initramfs
fi
KVER=$(cat "$OUT/release-$KRECIPE")
cat >"$OUT/current.tmp" <<EOF
KVER=$KVER
KPKG=built:$SERIES
VMLINUZ=$VMLINUZ
INITRD=$INITRD
RECIPE=$IRECIPE
EOF
mv "$OUT/current.tmp" "$OUT/current"
find "$OUT" -mindepth 1 -maxdepth 1 \( -name 'vmlinuz-*' -o -name 'config-*' -o -name 'release-*' \) \
    ! -name "*-$KRECIPE" -exec rm -f {} +
find "$OUT" -mindepth 1 -maxdepth 1 -name 'initramfs-*' ! -name "${INITRD##*/}" -exec rm -f {} +
phase "ready in $((SECONDS - T0))s: kernel $KVER at $VMLINUZ"
