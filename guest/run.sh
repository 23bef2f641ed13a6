#!/usr/bin/env bash
# shellcheck disable=SC2317 # cleanup/on_signal are invoked from traps
# guest/run.sh — run a command inside a QEMU (TCG) guest that has an emulated
# Intel IOMMU, QEMU's `edu` PCI device and an NVMe controller, with the host's
# root filesystem mounted over 9p and chrooted into (same paths, same cwd).
# A second, hot-pluggable edu and QEMU's QMP monitor (on the guest's ttyS3) let
# guest tests ask QEMU for a device removal (see guest/README.md).
#
# Usage: guest/run.sh [OPTIONS] [--] COMMAND [ARG...]
#   One argument is run as a shell command line:  guest/run.sh 'cd x && make'
#   Several arguments are run as an exact argv:   guest/run.sh -- ls -l /dev/vfio
#
# Options:
#   --timeout SECS   kill the guest after SECS seconds, exit 124 (default 600,
#                    env VFIO_GUEST_TIMEOUT)
#   --bind-edu       bind the edu device to vfio-pci before running COMMAND
#   --bind LIST      bind devices to vfio-pci; LIST is comma separated: edu,
#                    hotedu (the hot-pluggable edu), nvme, VVVV:DDDD
#                    (vendor:device) or a PCI address
#                    (env VFIO_GUEST_BIND)
#   --device SPEC    attach only the devices given (repeatable; default: edu,
#                    nvme and hotedu, env VFIO_GUEST_DEVICES, specs separated
#                    by spaces): edu (0000:00:03.0), nvme[,size=SIZE]
#                    (0000:00:04.0, a sparse scratch drive, SIZE like 64M (the
#                    default) or 2G), hotedu (the hot-pluggable edu, 0000:01:00.0)
#   --accel MODE     tcg (default), kvm (fails, exit 3, without a working
#                    /dev/kvm), or auto: KVM when /dev/kvm opens and answers
#                    KVM_GET_API_VERSION and the guest starts under it within
#                    VFIO_GUEST_KVM_PROBE_SECS (20), else TCG (env VFIO_GUEST_ACCEL)
#   --probe-accel    print what --accel auto would start with, and why; exit 0
#   --kernel PKG     the Debian kernel package to boot, e.g.
#                    linux-image-6.1.0-48-amd64 (env VFIO_GUEST_KERNEL_PKG;
#                    switching runs setup.sh --update, which drops the other one),
#                    or 6.12: the kernel guest/build-kernel.sh builds (iommufd,
#                    VFIO device cdevs, the mtty mdev sample; built once, ~10 min)
#   --tmpfs-tmp      mount a private tmpfs on /tmp (default: /tmp is the host's
#                    /tmp over 9p and TMPDIR=/run/tmp, a guest tmpfs)
#                    (env VFIO_GUEST_TMP=tmpfs)
#   -v, --verbose    show kernel messages and guest progress (VFIO_GUEST_VERBOSE=1)
#   -q, --quiet      no "[guest]" start line
#   --keep           keep the run directory (cmd.sh, console.log) afterwards
#   -h, --help       this text
#
# Exit status: COMMAND's exit status; 124 timeout; 125 the guest failed before
# reporting a status (boot failure, ...); 3 prerequisites missing; 2 usage.
# More env: VFIO_GUEST_CACHE, VFIO_GUEST_MEM (MiB, 2048), VFIO_GUEST_SMP (2),
# VFIO_GUEST_CPU (qemu64,+svm), VFIO_GUEST_9P_CACHE (loose),
# VFIO_GUEST_TCG_THREAD (single; multi runs a host thread per vCPU, see accel_args),
# VFIO_GUEST_QEMU_ARGS (extra args, word-split), VFIO_GUEST_NO_SETUP=1 (fail
# instead of running setup.sh when the cache is not ready).
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=common.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/common.sh"

usage() { awk 'NR > 2 && /^#/ { sub(/^# ?/, ""); print; next } NR > 2 { exit }' "$0"; }

TIMEOUT="${VFIO_GUEST_TIMEOUT:-600}"
BIND="${VFIO_GUEST_BIND:-}"
VERBOSE="${VFIO_GUEST_VERBOSE:-0}"
QUIET=0
KEEP="${VFIO_GUEST_KEEP:-0}"
TMPMODE="${VFIO_GUEST_TMP:-host}"
DEVICES=()
ACCEL="${VFIO_GUEST_ACCEL:-tcg}"
PROBE_ONLY=0
while (($#)); do
    case "$1" in
        --timeout)
            (($# >= 2)) || die "$EXIT_USAGE" "--timeout needs a value"
            TIMEOUT="$2"
            shift
            ;;
        --timeout=*) TIMEOUT="${1#*=}" ;;
        --bind-edu) BIND="$BIND,edu" ;;
        --bind)
            (($# >= 2)) || die "$EXIT_USAGE" "--bind needs a value"
            BIND="$BIND,$2"
            shift
            ;;
        --bind=*) BIND="$BIND,${1#*=}" ;;
        --device)
            (($# >= 2)) || die "$EXIT_USAGE" "--device needs a value"
            DEVICES+=("$2")
            shift
            ;;
        --device=*) DEVICES+=("${1#*=}") ;;
        --accel)
            (($# >= 2)) || die "$EXIT_USAGE" "--accel needs a value"
            ACCEL="$2"
            shift
            ;;
        --accel=*) ACCEL="${1#*=}" ;;
        --probe-accel) PROBE_ONLY=1 ;;
        --kernel)
            (($# >= 2)) || die "$EXIT_USAGE" "--kernel needs a value"
            export VFIO_GUEST_KERNEL_PKG="$2"
            shift
            ;;
        --kernel=*) export VFIO_GUEST_KERNEL_PKG="${1#*=}" ;;
        --tmpfs-tmp) TMPMODE=tmpfs ;;
        -v | --verbose) VERBOSE=1 ;;
        -q | --quiet) QUIET=1 ;;
        --keep) KEEP=1 ;;
        -h | --help)
            usage
            exit 0
            ;;
        --)
            shift
            break
            ;;
        -*) die "$EXIT_USAGE" "unknown option '$1' (see guest/run.sh --help)" ;;
        *) break ;;
    esac
    shift
done
[[ "$ACCEL" == tcg || "$ACCEL" == kvm || "$ACCEL" == auto ]] || die "$EXIT_USAGE" "bad --accel '$ACCEL' (tcg, kvm or auto)"

# ---------------------------------------------------------------- KVM ---------
KVM_DEVICE="${VFIO_GUEST_KVM_DEVICE:-/dev/kvm}" # another path only for tests of the check
KVM_VERDICT="$CACHE/kvm-failed"
# kvm_unusable: true (and prints why) when KVM cannot be tried; false when it can.
kvm_unusable() {
    local api
    if [[ ! -e "$KVM_DEVICE" ]]; then
        echo "$KVM_DEVICE does not exist (virtualization off in the firmware, the kvm module not loaded, or a VM without nested virtualization)"
    elif [[ ! -c "$KVM_DEVICE" ]]; then
        echo "$KVM_DEVICE is not a character device"
    elif ! { : <>"$KVM_DEVICE"; } 2>/dev/null; then
        echo "$KVM_DEVICE does not open read-write (as non-root: add the user to the kvm group)"
    elif ! command -v perl >/dev/null 2>&1; then
        return 1 # no perl (Debian's is essential) to ask the API version: the boot tells
    elif ! api=$(perl -e 'open(my $f, "+<", $ARGV[0]) or die "open: $!\n"; my $r = ioctl($f, 0xAE00, 0);
            defined $r or die "KVM_GET_API_VERSION failed: $!\n"; print $r eq "0 but true" ? 0 : $r, "\n"' "$KVM_DEVICE" 2>&1); then
        # KVM_GET_API_VERSION is _IO(0xAE, 0x00); every KVM since Linux 2.6.22 answers 12.
        echo "$KVM_DEVICE: ${api:-no answer}"
    elif [[ "$api" != 12 ]]; then
        echo "$KVM_DEVICE: KVM_GET_API_VERSION is '$api', not 12"
    else
        return 1
    fi
    return 0
}
# What identifies this host's KVM for the verdict of an earlier failed boot.
kvm_key() { printf '%s %s %s' "$(uname -r)" "$(qemu-system-x86_64 --version 2>/dev/null | head -n 1)" "$KVM_DEVICE"; }
# Prints "kvm" or "tcg: REASON" for --accel auto.
choose_accel() {
    local why key reason
    if why=$(kvm_unusable); then
        echo "tcg: $why"
        return
    fi
    if [[ -r "$KVM_VERDICT" ]]; then
        { IFS= read -r key && IFS= read -r reason; } <"$KVM_VERDICT" || true
        if [[ "$key" == "$(kvm_key)" ]]; then
            echo "tcg: KVM failed to start the guest on this host before ($reason); rm $KVM_VERDICT to try it again"
            return
        fi
    fi
    echo kvm
}
if [[ "$PROBE_ONLY" == 1 ]]; then
    choose_accel
    exit 0
fi
ACCEL_NOTE=''
AUTO_KVM=0 # KVM chosen by auto: a failure before the command starts falls back to TCG
case "$ACCEL" in
    kvm)
        if why=$(kvm_unusable); then die "$EXIT_MISSING" "--accel kvm: $why"; fi
        ;;
    auto)
        ACCEL=$(choose_accel)
        if [[ "$ACCEL" == kvm ]]; then
            AUTO_KVM=1
        else
            ACCEL_NOTE="${ACCEL#tcg: }"
            ACCEL=tcg
        fi
        ;;
esac

(($#)) || die "$EXIT_USAGE" "no COMMAND given (usage: guest/run.sh [--timeout SECS] [--] COMMAND...)"
[[ "$TIMEOUT" =~ ^[0-9]+$ && "$TIMEOUT" -gt 0 ]] || die "$EXIT_USAGE" "bad timeout '$TIMEOUT'"
[[ "$VERBOSE" == 1 ]] || VERBOSE=0
[[ "$TMPMODE" == host || "$TMPMODE" == tmpfs ]] || die "$EXIT_USAGE" "VFIO_GUEST_TMP must be 'host' or 'tmpfs'"
BIND="${BIND//,/ }"
read -r -a _bind <<<"$BIND"
BIND="${_bind[*]}"
[[ "$BIND" =~ ^[A-Za-z0-9:.\ ]*$ ]] || die "$EXIT_USAGE" "bad bind list '$BIND'"
if ((${#DEVICES[@]} == 0)); then
    # shellcheck disable=SC2206 # specs are separated by spaces (a spec has commas)
    DEVICES=(${VFIO_GUEST_DEVICES:-edu nvme hotedu})
fi
HAS_EDU=0
HAS_NVME=0
HAS_HOTEDU=0
NVME_SIZE=64M
for spec in "${DEVICES[@]}"; do
    IFS=, read -r -a parts <<<"$spec"
    kind="${parts[0]:-}"
    case "$kind" in
        edu | hotedu | nvme) ;;
        *) die "$EXIT_USAGE" "unknown device '$kind' in '$spec' (edu, nvme[,size=SIZE] or hotedu)" ;;
    esac
    var="HAS_${kind^^}"
    [[ "${!var}" == 0 ]] || die "$EXIT_USAGE" "device '$kind' given twice (one of each: edu, nvme, hotedu)"
    printf -v "$var" 1
    for opt in "${parts[@]:1}"; do
        case "$kind,$opt" in
            nvme,size=*)
                NVME_SIZE="${opt#size=}"
                [[ "$NVME_SIZE" =~ ^[1-9][0-9]*[KMG]?$ ]] || die "$EXIT_USAGE" "bad NVMe size '$NVME_SIZE' (e.g. 64M, 2G)"
                ;;
            nvme,*) die "$EXIT_USAGE" "device 'nvme' has no option '$opt' (it takes size=SIZE)" ;;
            *) die "$EXIT_USAGE" "device '$kind' takes no options ('$opt')" ;;
        esac
    done
done
for want in $BIND; do
    case "$want" in
        edu | nvme | hotedu)
            var="HAS_${want^^}"
            [[ "${!var}" == 1 ]] || die "$EXIT_USAGE" "--bind $want, but the guest has no $want (--device)"
            ;;
    esac
done
MEM="${VFIO_GUEST_MEM:-2048}"
SMP="${VFIO_GUEST_SMP:-2}"
CPU="${VFIO_GUEST_CPU:-qemu64,+svm}"
P9CACHE="${VFIO_GUEST_9P_CACHE:-loose}"

# ------------------------------------------------------------ prerequisites --
SETUP_ARGS=()
BUILT_KERNEL=''
if [[ "${VFIO_GUEST_KERNEL_PKG:-}" =~ ^[0-9]+\.[0-9]+$ ]]; then
    BUILT_KERNEL="$VFIO_GUEST_KERNEL_PKG"
    [[ "$BUILT_KERNEL" == 6.12 ]] || die "$EXIT_USAGE" "--kernel $BUILT_KERNEL: the kernel series built here is 6.12 (or give a Debian package name)"
    unset VFIO_GUEST_KERNEL_PKG
fi
if [[ -n "$BUILT_KERNEL" ]]; then
    # The packages (qemu, busybox) come from setup.sh; the kernel from build-kernel.sh.
    if ! cache_ready "$CACHE/built/$BUILT_KERNEL/current"; then
        [[ "${VFIO_GUEST_NO_SETUP:-0}" != 1 ]] || die "$EXIT_MISSING" "kernel $BUILT_KERNEL not built (run guest/build-kernel.sh)"
        cache_ready || bash "$GUEST_DIR/setup.sh" -q || die "$EXIT_MISSING" "guest/setup.sh failed; the guest cannot run"
        log "kernel $BUILT_KERNEL not built yet: running guest/build-kernel.sh -q"
        bash "$GUEST_DIR/build-kernel.sh" -q || die "$EXIT_MISSING" "guest/build-kernel.sh failed; the guest cannot run"
    fi
    cache_ready "$CACHE/built/$BUILT_KERNEL/current" || die "$EXIT_MISSING" "guest/build-kernel.sh ran but kernel $BUILT_KERNEL is still not ready"
elif ! cache_ready; then
    SETUP_ARGS=(-q)
    SETUP_WHY="guest cache $CACHE not ready"
elif [[ -n "${VFIO_GUEST_KERNEL_PKG:-}" && "$KPKG" != "$VFIO_GUEST_KERNEL_PKG" ]]; then
    # Another kernel is cached: setup.sh --update fetches the pinned one and makes it current.
    SETUP_ARGS=(-q --update)
    SETUP_WHY="kernel $VFIO_GUEST_KERNEL_PKG asked for, $KPKG cached"
fi
if ((${#SETUP_ARGS[@]})); then
    if [[ "${VFIO_GUEST_NO_SETUP:-0}" == 1 ]]; then
        die "$EXIT_MISSING" "$SETUP_WHY (run guest/setup.sh)"
    fi
    log "$SETUP_WHY: running guest/setup.sh ${SETUP_ARGS[*]}"
    bash "$GUEST_DIR/setup.sh" "${SETUP_ARGS[@]}" || die "$EXIT_MISSING" "guest/setup.sh failed; the guest cannot run"
    cache_ready || die "$EXIT_MISSING" "guest/setup.sh ran but the cache at $CACHE is still not ready"
fi
for c in qemu-system-x86_64 timeout mkfifo truncate; do
    command -v "$c" >/dev/null 2>&1 || die "$EXIT_MISSING" "command '$c' not found (run guest/setup.sh)"
done
[[ "$CACHE" != *[[:space:],]* ]] || die "$EXIT_MISSING" "cache dir '$CACHE' must not contain spaces or commas"

# ------------------------------------------------------------------ run dir --
mkdir -p "$CACHE/run"
# Remove run directories that crashed runs left behind a day ago or earlier.
find "$CACHE/run" -mindepth 1 -maxdepth 1 -mmin +1440 -exec rm -rf {} + 2>/dev/null || true
RUN="$(mktemp -d "$CACHE/run/XXXXXXXX")"
QPID=''
OPID=''
EPID=''
cleanup() {
    local p
    for p in "$QPID" "$OPID" "$EPID"; do
        [[ -z "$p" ]] || kill "$p" 2>/dev/null || true
    done
    if [[ "$KEEP" == 1 ]]; then
        log "run directory kept: $RUN"
    else
        rm -rf "$RUN"
    fi
}
trap cleanup EXIT
on_signal() { # on_signal EXIT_CODE
    local i
    log "interrupted: stopping the guest"
    if [[ -n "$QPID" ]]; then
        kill -TERM "$QPID" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            kill -0 "$QPID" 2>/dev/null || break
            sleep 0.1
        done
    fi
    exit "$1"
}
trap 'on_signal 130' INT
trap 'on_signal 143' TERM
trap 'on_signal 129' HUP

# The hot-pluggable edu: its QEMU id (for device_del) and the address the guest
# gives it (bus 1 is the firmware's number for the only root port's bus).
HOTPLUG_ID=hotedu
HOTPLUG_ADDR=0000:01:00.0
if [[ "$HAS_HOTEDU" == 0 ]]; then HOTPLUG_ADDR=''; fi
# The guest's end of QEMU's QMP monitor: the 4th ISA serial port.
QMP_TTY=/dev/ttyS3
QMP_SOCK="$RUN/qmp.sock"
# A unix socket path has at most 107 bytes (sun_path).
((${#QMP_SOCK} < 100)) || die "$EXIT_MISSING" "cache dir '$CACHE' is too long for a unix socket path (qemu's QMP link)"

# Single-quote a string for /bin/sh.
shq() { printf "'%s'" "${1//\'/\'\\\'\'}"; }

{
    echo '# generated by guest/run.sh'
    # The command has started: for --accel auto, the guest is up (see boot below).
    printf ': >%s 2>/dev/null || true\n' "$(shq "$RUN/started")"
    while IFS= read -r name; do
        case "$name" in
            PATH | HOME | VFIO_* | NODE_* | CARGO_* | RUST_* | npm_config_* | CI* | TERM*)
                printf 'export %s=%s\n' "$name" "$(shq "${!name}")"
                ;;
        esac
    done < <(compgen -e)
    echo 'export VFIO_GUEST=1'
    # Where tests find QEMU's monitor and the device they may ask it to remove
    # (after the host's VFIO_* so that these always describe this guest).
    printf 'export VFIO_GUEST_QMP=%s\n' "$QMP_TTY"
    if [[ "$HAS_HOTEDU" == 1 ]]; then
        printf 'export VFIO_GUEST_HOTPLUG_ADDR=%s VFIO_GUEST_HOTPLUG_ID=%s\n' "$HOTPLUG_ADDR" "$HOTPLUG_ID"
    else
        echo 'unset VFIO_GUEST_HOTPLUG_ADDR VFIO_GUEST_HOTPLUG_ID'
    fi
    # Host /tmp is 9p (no sockets/FIFOs, slow writes): temp files go to tmpfs.
    [[ "$TMPMODE" != host ]] || echo 'export TMPDIR=/run/tmp'
    printf 'cd -- %s || { echo "[guest] cannot cd to %s" >&2; exit 125; }\n' "$(shq "$PWD")" "${PWD//[\'\"\\\$\`]/?}"
    if (($# == 1)); then
        printf 'exec /bin/sh -c %s\n' "$(shq "$1")"
    else
        printf 'exec'
        for a in "$@"; do printf ' %s' "$(shq "$a")"; done
        printf '\n'
    fi
} >"$RUN/cmd.sh"

OUT_TTY=0
ERR_TTY=0
[[ ! -t 1 ]] || OUT_TTY=1
[[ ! -t 2 ]] || ERR_TTY=1
cat >"$RUN/guest.conf" <<EOF
BIND='$BIND'
TMPMODE=$TMPMODE
OUT_TTY=$OUT_TTY
ERR_TTY=$ERR_TTY
QMP_TTY=$QMP_TTY
HOTPLUG_ADDR=$HOTPLUG_ADDR
EOF

[[ "$HAS_NVME" == 0 ]] || truncate -s "$NVME_SIZE" "$RUN/nvme.img"
# An 8 KiB option ROM for edu, so the tests have a read-only region (ROM, index 6).
# The kernel maps it only with a valid header: 0x55 0xAA, the size in 512-byte units,
# and at 0x18 a pointer to a "PCIR" structure (vendor 1234, device 11e8, last image).
{
    printf '\x55\xaa\x10'; head -c 21 /dev/zero; printf '\x1c\x00\x00\x00'
    printf 'PCIR\x34\x12\xe8\x11\x00\x00\x18\x00\x00\xff\x00\x00\x10\x00\x00\x00\x00\x80\x00\x00'
    head -c $((8192 - 52)) /dev/zero
} > "$RUN/edu-rom.bin"
mkfifo "$RUN/out.fifo" "$RUN/err.fifo"

# ------------------------------------------------------------------- qemu ----
if [[ "$VERBOSE" == 1 ]]; then
    KLOG="loglevel=7"
else
    # Emergencies and alerts only (a panic, an oops): a boot that dies says why.
    KLOG="quiet loglevel=2"
fi
qesc() { printf '%s' "${1//,/,,}"; }
# shellcheck disable=SC2054 # commas are part of qemu option values
QEMU=(qemu-system-x86_64
    -machine q35,kernel-irqchip=split
    -m "$MEM" -smp "$SMP" -nodefaults -display none -no-reboot
    -chardev "stdio,id=con,signal=off,logfile=$(qesc "$RUN/console.log")" -serial chardev:con
    -chardev "file,id=out,path=$(qesc "$RUN/out.fifo")" -serial chardev:out
    -chardev "file,id=err,path=$(qesc "$RUN/err.fifo")" -serial chardev:err
    # QMP for the guest on ttyS3. The guest cannot reach a host socket (9p), and a
    # chardev has one frontend, so the monitor listens on a unix socket and a second
    # chardev, the serial port's, connects to it: qemu talks to itself, no relay.
    # IRQ 5, not COM4's usual 3: ttyS1 (stdout) has 3, and qemu's ISA IRQ lines are
    # not wired-OR, so two UARTs on one can lose interrupts (ACPI tells the kernel).
    -chardev "socket,id=qmp,path=$(qesc "$QMP_SOCK"),server=on,wait=off" -mon chardev=qmp,mode=control
    -chardev "socket,id=qmpguest,path=$(qesc "$QMP_SOCK")" -device isa-serial,chardev=qmpguest,index=3,irq=5
    -device intel-iommu,intremap=on,caching-mode=on
    -fsdev local,id=fs0,path=/,security_model=none,multidevs=remap
    -device virtio-9p-pci,fsdev=fs0,mount_tag=hostroot,addr=05.0
    -kernel "$VMLINUZ" -initrd "$INITRD"
    # CPU resets and their cause (a triple fault says so), for a boot that ends early.
    -d cpu_reset -D "$RUN/qemu.log"
    -append "console=ttyS0 $KLOG intel_iommu=on panic=-1 mitigations=off vfio_guest.run=$RUN vfio_guest.verbose=$VERBOSE vfio_guest.9pcache=$P9CACHE"
)
SHOWDEV=()
if [[ "$HAS_EDU" == 1 ]]; then
    QEMU+=(-device "edu,addr=03.0,romfile=$(qesc "$RUN/edu-rom.bin")")
    SHOWDEV+=("edu 0000:00:03.0")
fi
if [[ "$HAS_NVME" == 1 ]]; then
    QEMU+=(-drive "file=$(qesc "$RUN/nvme.img"),if=none,id=nvm,format=raw"
        -device nvme,serial=deadbeef,drive=nvm,addr=04.0)
    SHOWDEV+=("nvme 0000:00:04.0 ($NVME_SIZE)")
fi
if [[ "$HAS_HOTEDU" == 1 ]]; then
        # A second edu that QMP device_del can remove: devices on pcie.0 cannot be
        # unplugged, so it sits behind a root port. The port is function 1 of the chipset's
        # slot 1f: IOMMU groups are numbered in probe order, and a port at a new slot
        # (06.0) would take group 4 from 1f.0/1f.2/1f.3; at 1f.1 (with ACS) it gets its
        # own group 5, the chipset keeps 4 and the edu behind it gets group 6. q35's ACPI
        # hotplug (qemu's default) removes it; pciehp (native, a 5 s attention-button
    #     delay) is VFIO_GUEST_QEMU_ARGS='-global ICH9-LPC.acpi-pci-hotplug-with-bridge-support=off'.
    QEMU+=(
        -device pcie-root-port,id=hotport,chassis=1,slot=1,addr=1f.1
        -device "edu,id=$HOTPLUG_ID,bus=hotport"
    )
    SHOWDEV+=("hotedu $HOTPLUG_ADDR")
fi
if [[ -n "${VFIO_GUEST_QEMU_ARGS:-}" ]]; then
    # shellcheck disable=SC2206 # word splitting is the documented interface
    QEMU+=(${VFIO_GUEST_QEMU_ARGS})
fi

if (($# == 1)); then SHOWCMD="$1"; else SHOWCMD="${*@Q}"; fi
# accel_args: the accelerator's qemu arguments for $ACCEL.
accel_args() {
    if [[ "$ACCEL" == kvm ]]; then
        ACCEL_ARGS=(-accel kvm -cpu "${VFIO_GUEST_CPU:-host}")
    else
        # One host thread for all vCPUs: with a thread each (thread=multi), QEMU 7.2 let a
        # vCPU run code another had just patched, stale: the kernel's live patching of a
        # static branch (KVM_CREATE_VM turns one on in __schedule) left an int3 that the
        # idle vCPU then hit ("Oops: int3" in __schedule, a panic, qemu gone without a
        # word), and node's JIT died by SIGILL/SIGSEGV the same way. The vCPUs still
        # interleave (preemption, IPIs), only not at the same instant.
        ACCEL_ARGS=(-accel "tcg,thread=${VFIO_GUEST_TCG_THREAD:-single}" -cpu "$CPU")
    fi
}
# start_guest: the output relays and qemu (under timeout), in the background.
start_guest() {
    accel_args
    if [[ "$QUIET" == 0 ]]; then
        [[ -z "$ACCEL_NOTE" ]] || log "TCG (software emulation), not KVM: $ACCEL_NOTE"
        log "running in QEMU guest (${ACCEL^^}, kernel $KVER, ${SHOWDEV[*]/%/,} timeout ${TIMEOUT}s): $SHOWCMD"
    fi
    # The relays copy the guest's ttyS1/ttyS2 to our stdout/stderr (fds inherited,
    # so this works whatever stdout is: tty, pipe, file or socket).
    cat "$RUN/out.fifo" &
    OPID=$!
    cat "$RUN/err.fifo" >&2 &
    EPID=$!
    START=$SECONDS
    timeout -k 5 "$TIMEOUT" "${QEMU[@]}" "${ACCEL_ARGS[@]}" </dev/null >&2 &
    QPID=$!
}
# wait_guest: waits for qemu (its exit status in qrc), then lets the relays drain.
wait_guest() {
    qrc=0
    wait "$QPID" || qrc=$?
    QPID=''
    ELAPSED=$((SECONDS - START))
    # Unblock relays whose fifo qemu never opened, then let them drain.
    exec 7<>"$RUN/out.fifo" 8<>"$RUN/err.fifo"
    exec 7>&- 8>&-
    wait "$OPID" 2>/dev/null || true
    wait "$EPID" 2>/dev/null || true
    OPID=''
    EPID=''
}

start_guest
if [[ "$AUTO_KVM" == 1 ]]; then
    # A /dev/kvm can answer and still not run a guest (a nested or paravirtual KVM
    # that hangs or aborts qemu): until the command has started (cmd.sh's first line
    # writes $RUN/started), a failure is KVM's, and the guest boots again under TCG.
    PROBE="${VFIO_GUEST_KVM_PROBE_SECS:-20}"
    while [[ ! -e "$RUN/started" ]] && kill -0 "$QPID" 2>/dev/null && ((SECONDS - START < PROBE)); do
        sleep 0.2
    done
    if [[ ! -e "$RUN/started" ]]; then
        if kill -0 "$QPID" 2>/dev/null; then
            why="the guest did not reach its command within ${PROBE}s"
            kill -TERM "$QPID" 2>/dev/null || true
        else
            why="qemu failed"
        fi
        wait_guest
        [[ "$why" != "qemu failed" ]] || why="qemu exited with status $qrc before the guest reached its command"
        printf '%s\n%s\n' "$(kvm_key)" "$why" >"$KVM_VERDICT.tmp" && mv "$KVM_VERDICT.tmp" "$KVM_VERDICT" || true
        log "KVM: $why; booting again with TCG (later runs use TCG at once; rm $KVM_VERDICT to try KVM again)"
        ACCEL=tcg
        ACCEL_NOTE=''
        start_guest
    fi
fi
wait_guest

if [[ $qrc == 124 ]] || { [[ $qrc == 137 ]] && ((ELAPSED >= TIMEOUT)); }; then
    log "TIMEOUT: command did not finish within ${TIMEOUT}s; qemu was killed (exit 124): $SHOWCMD"
    exit "$EXIT_TIMEOUT"
fi

rc=''
if [[ -f "$RUN/rc" ]]; then
    rc="$(<"$RUN/rc")"
fi
if ! [[ "$rc" =~ ^[0-9]+$ ]]; then
    log "the guest failed without reporting an exit status (qemu exit $qrc after ${ELAPSED}s)."
    # What the console said last (a panic, a reset, nothing at all): the run directory
    # goes with this exit, so this is the only trace of a boot that died early.
    if [[ -s "$RUN/console.log" ]]; then
        log "the console's last lines:"
        tail -n 40 "$RUN/console.log" | tr -d '\r' | sed 's/^/[console] /' >&2
    else
        log "the console printed nothing"
    fi
    # qemu's CPU reset log (-d cpu_reset) tells an emulated triple fault from a guest
    # that reset itself (a panic, with panic=-1) or powered off.
    if grep -qi 'triple fault' "$RUN/qemu.log" 2>/dev/null; then
        log "qemu: a CPU took a triple fault (the emulator reset the machine)"
    elif [[ -s "$RUN/qemu.log" ]]; then
        log "qemu: no triple fault: the guest reset or powered off itself"
    fi
    log "re-run with --verbose (kernel messages) and --keep (keeps the run directory with console.log) to debug"
    exit "$EXIT_GUEST"
fi
[[ "$VERBOSE" == 0 ]] || log "exit status $rc after ${ELAPSED}s"
exit "$rc"
