#!/bin/sh
# shellcheck shell=sh disable=SC3045 # busybox ash: ulimit -l/-n exist
# PID 1 of the vfio-ioctls QEMU test guest. Runs under busybox from the
# initramfs that guest/setup.sh builds; see guest/README.md.
#
# Kernel command line parameters (set by guest/run.sh):
#   vfio_guest.run=DIR      host run directory (contains cmd.sh, guest.conf)
#   vfio_guest.verbose=0|1  print progress lines
#   vfio_guest.9pcache=MODE 9p cache mode (none, loose, mmap, ...)
#
# Protocol: the host writes DIR/cmd.sh (cd + env + command) and
# DIR/guest.conf (BIND, TMPMODE, OUT_TTY, ERR_TTY, QMP_TTY, HOTPLUG_ADDR). The
# guest mounts the host root over 9p at /host, chroots into it and runs cmd.sh
# with stdout on ttyS1 and stderr on ttyS2, then writes the exit code to DIR/rc
# and powers off. QMP_TTY is QEMU's monitor (set raw here, used by tests).

PATH=/bin
export PATH
umask 022

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/null >/dev/console 2>&1

RUN=''
VERBOSE=0
P9CACHE=loose
read -r cmdline </proc/cmdline
for w in $cmdline; do
    case "$w" in
        vfio_guest.run=*) RUN="${w#*=}" ;;
        vfio_guest.verbose=*) VERBOSE="${w#*=}" ;;
        vfio_guest.9pcache=*) P9CACHE="${w#*=}" ;;
    esac
done

say() { echo "[guest] $*"; }
info() { if [ "$VERBOSE" = 1 ]; then say "$(cut -d' ' -f1 /proc/uptime)s $*"; fi; }
halt() {
    sync
    # The console shows emergencies (loglevel=2) while the guest runs; not the
    # kernel's "reboot: Power down" of a normal end.
    [ "$VERBOSE" = 1 ] || echo 0 >/proc/sys/kernel/printk 2>/dev/null
    poweroff -f
    echo o >/proc/sysrq-trigger
    sleep 10
    exit 1 # PID 1 exiting panics; panic=-1 + qemu -no-reboot ends qemu
}
fatal() {
    say "FATAL: $*"
    halt
}

info "init started"

# --- kernel modules (list and order computed by setup.sh from modules.dep) ---
while read -r kind mod; do
    [ -n "$mod" ] || continue
    if err=$(insmod "/lib/modules/$mod.ko" 2>&1); then
        info "loaded $mod"
    else
        case "$err" in
            *"File exists"*) ;;
            *)
                if [ "$kind" = req ]; then
                    fatal "cannot load required module $mod: $err"
                fi
                info "optional module $mod not loaded: $err"
                ;;
        esac
    fi
done </etc/modules.load

# --- host root over 9p ---
mkdir -p /host
i=0
until mount -t 9p -o "trans=virtio,version=9p2000.L,msize=512000,cache=$P9CACHE" \
    hostroot /host 2>/tmp/mount.err; do
    i=$((i + 1))
    if [ "$i" -ge 50 ]; then
        fatal "cannot mount host root over 9p: $(cat /tmp/mount.err)"
    fi
    usleep 100000
done
info "mounted host root (cache=$P9CACHE)"

[ -n "$RUN" ] || fatal "no vfio_guest.run= on the kernel command line"
H="/host$RUN"
[ -f "$H/cmd.sh" ] || fatal "$RUN/cmd.sh not found on the host"

BIND=''
TMPMODE=host
OUT_TTY=0
ERR_TTY=0
QMP_TTY=''
HOTPLUG_ADDR=''
if [ -f "$H/guest.conf" ]; then
    # shellcheck disable=SC1090,SC1091
    . "$H/guest.conf"
fi

# --- the chroot's pseudo filesystems ---
R=/host
mount -t proc proc "$R/proc" || fatal "mount $R/proc"
mount -t sysfs sysfs "$R/sys" || fatal "mount $R/sys"
mount -t devtmpfs devtmpfs "$R/dev" || fatal "mount $R/dev"
mkdir -p "$R/dev/pts" "$R/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$R/dev/pts" || fatal "mount $R/dev/pts"
mount -t tmpfs -o mode=1777 tmpfs "$R/dev/shm" || fatal "mount $R/dev/shm"
[ -e "$R/dev/fd" ] || ln -s /proc/self/fd "$R/dev/fd"
[ -e "$R/dev/stdin" ] || ln -s /proc/self/fd/0 "$R/dev/stdin"
[ -e "$R/dev/stdout" ] || ln -s /proc/self/fd/1 "$R/dev/stdout"
[ -e "$R/dev/stderr" ] || ln -s /proc/self/fd/2 "$R/dev/stderr"
mount -t tmpfs -o mode=0755 tmpfs "$R/run" || fatal "mount $R/run"
mkdir -p "$R/run/tmp" && chmod 1777 "$R/run/tmp" # TMPDIR (see README)
if [ "$TMPMODE" = tmpfs ]; then
    mount -t tmpfs -o mode=1777 tmpfs "$R/tmp" || fatal "mount $R/tmp"
fi
hostname vfio-guest

# --- optional: bind devices to vfio-pci ---
# The hot-pluggable edu must be where run.sh told the tests it is.
if [ -n "$HOTPLUG_ADDR" ] && [ ! -e "/sys/bus/pci/devices/$HOTPLUG_ADDR" ]; then
    fatal "the hot-plug edu is not at $HOTPLUG_ADDR"
fi

bind_one() {
    d="$1"
    a="${d##*/}"
    echo vfio-pci >"$d/driver_override" || fatal "driver_override for $a"
    if [ -e "$d/driver" ]; then
        echo "$a" >"$d/driver/unbind" || fatal "unbind $a"
    fi
    echo "$a" >/sys/bus/pci/drivers_probe || fatal "drivers_probe $a"
    drv=$(readlink "$d/driver")
    [ "${drv##*/}" = vfio-pci ] || fatal "$a did not bind to vfio-pci (driver: ${drv:-none})"
    grp=$(readlink "$d/iommu_group")
    info "bound $a ($(cat "$d/vendor"):$(cat "$d/device")) to vfio-pci, iommu group ${grp##*/}"
}
for want in $BIND; do
    found=0
    for d in /sys/bus/pci/devices/*; do
        v=$(cat "$d/vendor")
        dev=$(cat "$d/device")
        cls=$(cat "$d/class")
        a="${d##*/}"
        case "$want" in
            edu) [ "$a" = 0000:00:03.0 ] || continue ;; # not the hot-plug one
            hotedu) [ "$a" = "$HOTPLUG_ADDR" ] || continue ;;
            nvme) [ "$cls" = 0x010802 ] || continue ;;
            *:*:*.*) [ "$a" = "$want" ] || continue ;;
            *:*.*) [ "$a" = "0000:$want" ] || continue ;;
            *:*) [ "${v#0x}:${dev#0x}" = "$want" ] || continue ;;
            *) fatal "unknown device '$want' in bind list (use edu, hotedu, nvme, VVVV:DDDD or a PCI address)" ;;
        esac
        bind_one "$d"
        found=1
    done
    [ "$found" = 1 ] || fatal "no PCI device matches '$want'"
done

# QMP's port: raw, and above all no echo, which would send QEMU's replies back to
# it as input. A serial port keeps its termios across opens.
if [ -n "$QMP_TTY" ]; then
    stty -F "$QMP_TTY" raw -echo 2>/dev/null || fatal "no serial port $QMP_TTY (QMP)"
fi

ulimit -l unlimited || fatal "cannot raise RLIMIT_MEMLOCK"
ulimit -n 65536 2>/dev/null || true

# --- run the command ---
for t in /dev/ttyS1 /dev/ttyS2; do
    stty -F "$t" raw -echo 2>/dev/null || fatal "no serial port $t"
done
OUT=/dev/ttyS1
ERR=/dev/ttyS2
pids=''
if [ "$OUT_TTY" != 1 ]; then # make stdout a pipe, like on the host
    mkfifo /tmp/out.fifo
    cat /tmp/out.fifo >/dev/ttyS1 &
    pids="$pids $!"
    OUT=/tmp/out.fifo
fi
if [ "$ERR_TTY" != 1 ]; then
    mkfifo /tmp/err.fifo
    cat /tmp/err.fifo >/dev/ttyS2 &
    pids="$pids $!"
    ERR=/tmp/err.fifo
fi

info "running $RUN/cmd.sh"
env -i /bin/chroot /host /bin/sh "$RUN/cmd.sh" </dev/null >"$OUT" 2>"$ERR"
rc=$?
info "command exited with $rc"

# Let the output relays drain (a leftover background process may keep the
# pipe open: do not wait for it for long).
if [ -n "$pids" ]; then
    # shellcheck disable=SC2086
    (sleep 3 && kill $pids 2>/dev/null) &
    # shellcheck disable=SC2086
    wait $pids 2>/dev/null
fi

if ! { echo "$rc" >"$H/rc.tmp" && mv "$H/rc.tmp" "$H/rc"; }; then
    say "cannot write $RUN/rc"
fi
sync
if [ "$VERBOSE" = 1 ]; then echo "@@VFIO_GUEST_RC=$rc@@"; fi
halt
