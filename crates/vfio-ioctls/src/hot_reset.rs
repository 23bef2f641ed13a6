//! PCI hot reset (`VFIO_DEVICE_GET_PCI_HOT_RESET_INFO`, `VFIO_DEVICE_PCI_HOT_RESET`): a
//! slot or secondary bus reset, which resets the device and every device below the same
//! bridge. vfio-pci allows it only to whoever proves ownership of all of them by passing
//! the fd of every affected device's IOMMU group.

use std::fmt;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use vfio_bindings::bindings::vfio::{
    vfio_pci_dependent_device, vfio_pci_hot_reset, vfio_pci_hot_reset_info,
    VFIO_PCI_HOT_RESET_FLAG_DEV_ID,
};

use crate::abi::{as_bytes, get_u32, set_argsz};
use crate::container::VfioContainer;
use crate::error::{Result, VfioError};
use crate::group::VfioGroup;
use crate::ioctls;

const INFO_OP: &str = "VFIO_DEVICE_GET_PCI_HOT_RESET_INFO";
const RESET_OP: &str = "VFIO_DEVICE_PCI_HOT_RESET";

/// The most devices one reset can affect: a bus reset reaches every bus below the
/// bridge, and a PCI segment has 256 buses of 256 functions. A larger count from the
/// kernel is not believed (nor allocated for).
pub(crate) const MAX_AFFECTED: u32 = 256 * 256;

const HEADER: usize = std::mem::size_of::<vfio_pci_hot_reset_info>();
const ENTRY: usize = std::mem::size_of::<vfio_pci_dependent_device>();

/// How often the info is asked for again when the kernel wants more room each time
/// (devices appearing on the bus between the calls).
const INFO_ATTEMPTS: usize = 4;

/// One device a hot reset affects (`struct vfio_pci_dependent_device`), with the IOMMU
/// group whose fd the reset needs.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PciHotResetDevice {
    /// The device's IOMMU group.
    pub group_id: u32,
    /// PCI segment (domain).
    pub segment: u16,
    /// Bus number.
    pub bus: u8,
    /// Device (bits 7..3) and function (bits 2..0).
    pub devfn: u8,
}

impl PciHotResetDevice {
    /// The PCI address, `ssss:bb:dd.f` as in sysfs.
    ///
    /// ```
    /// let d = vfio_ioctls::PciHotResetDevice { group_id: 6, segment: 0, bus: 1, devfn: 0x0a };
    /// assert_eq!(d.address(), "0000:01:01.2");
    /// ```
    pub fn address(&self) -> String {
        format!(
            "{:04x}:{:02x}:{:02x}.{}",
            self.segment,
            self.bus,
            self.devfn >> 3,
            self.devfn & 7
        )
    }
}

impl fmt::Display for PciHotResetDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (group {})", self.address(), self.group_id)
    }
}

/// The devices a hot reset of the device `file` (named `name`) would reset, itself
/// included, in the kernel's order. For a device cdev the kernel lists iommufd device
/// ids instead of groups: each group is then read from sysfs.
pub(crate) fn hot_reset_info(file: &File, name: &str) -> Result<Vec<PciHotResetDevice>> {
    Ok(affected_devices(file, name)?
        .into_iter()
        .map(|(d, _)| d)
        .collect())
}

/// The iommufd device id the kernel gives an affected device no one here owns.
const DEVID_NOT_OWNED: u32 = u32::MAX;

/// As [`hot_reset_info`], each with its iommufd device id when the kernel lists by id.
fn affected_devices(file: &File, name: &str) -> Result<Vec<(PciHotResetDevice, Option<u32>)>> {
    let (devices, by_id) = hot_reset_info_raw(file, name)?;
    if !by_id {
        return Ok(devices.into_iter().map(|d| (d, None)).collect());
    }
    let sysfs = crate::sysfs::Sysfs::new();
    Ok(devices
        .into_iter()
        .map(|d| {
            let dir = std::path::Path::new("/sys/bus/pci/devices").join(d.address());
            let group = sysfs.iommu_group(&dir).unwrap_or(u32::MAX);
            (
                PciHotResetDevice {
                    group_id: group,
                    ..d
                },
                Some(d.group_id),
            )
        })
        .collect())
}

/// The kernel's list as it gives it (first word: group, or device id when the flag says
/// so), and whether it is by device id.
fn hot_reset_info_raw(file: &File, name: &str) -> Result<(Vec<PciHotResetDevice>, bool)> {
    let mut room = 0u32;
    for _ in 0..INFO_ATTEMPTS {
        let len = HEADER + ENTRY * room as usize;
        let mut buf = crate::alloc::try_zeroed::<u64>(INFO_OP, len.div_ceil(8))?;
        set_argsz(&mut buf, len);
        match ioctls::device_get_pci_hot_reset_info(file, &mut buf) {
            // Too small: the kernel says how many there are in `count`.
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => {
                let wanted = get_u32(&buf, 8);
                if wanted > MAX_AFFECTED {
                    return Err(VfioError::out_of_range(
                        INFO_OP,
                        format!(
                            "{name}: the kernel reports {wanted} affected devices, more than a \
                             PCI segment holds ({MAX_AFFECTED}); not believed"
                        ),
                    ));
                }
                if wanted <= room {
                    return Err(VfioError::os(INFO_OP, name.to_string(), e));
                }
                room = wanted;
                continue;
            }
            Err(e) => return Err(VfioError::os(INFO_OP, name.to_string(), e)),
            Ok(()) => {}
        }
        let by_id = get_u32(&buf, 4) & VFIO_PCI_HOT_RESET_FLAG_DEV_ID != 0;
        let filled = get_u32(&buf, 8);
        if filled > room {
            return Err(VfioError::out_of_range(
                INFO_OP,
                format!("{name}: the kernel reports {filled} devices in room for {room}"),
            ));
        }
        return Ok((
            parse_devices(&as_bytes(&buf)[HEADER..], filled as usize),
            by_id,
        ));
    }
    Err(VfioError::invalid(
        INFO_OP,
        format!(
            "{name}: the kernel asked for more room {INFO_ATTEMPTS} times (devices keep \
             appearing on the bus); try again"
        ),
    ))
}

/// The first `count` `vfio_pci_dependent_device` entries of `bytes` (which holds them).
fn parse_devices(bytes: &[u8], count: usize) -> Vec<PciHotResetDevice> {
    bytes
        .chunks_exact(ENTRY)
        .take(count)
        .map(|e| PciHotResetDevice {
            group_id: u32::from_ne_bytes([e[0], e[1], e[2], e[3]]),
            segment: u16::from_ne_bytes([e[4], e[5]]),
            bus: e[6],
            devfn: e[7],
        })
        .collect()
}

/// Which of `affected` belong to groups `container` does not hold.
fn not_held(affected: &[PciHotResetDevice], held: &[Arc<VfioGroup>]) -> Vec<PciHotResetDevice> {
    affected
        .iter()
        .filter(|d| !held.iter().any(|g| g.id() == d.group_id))
        .copied()
        .collect()
}

/// `vfio_pci_hot_reset` with `fds`, as u32 words (argsz, flags 0, count, the fds).
fn pack_hot_reset(fds: &[i32]) -> Vec<u32> {
    let len = std::mem::size_of::<vfio_pci_hot_reset>() + std::mem::size_of_val(fds);
    let mut words = vec![u32::try_from(len).unwrap_or(u32::MAX), 0, fds.len() as u32];
    // The kernel reads the fds as __s32; the bit pattern is what it wants.
    words.extend(fds.iter().map(|&fd| fd as u32));
    words
}

/// Hot-resets the device `file` (named `name`), passing the fds of the groups of
/// `container` that the reset affects. Refused before the kernel is asked when an
/// affected device's group is not held by `container`; returns the affected devices.
pub(crate) fn pci_hot_reset(
    file: &File,
    name: &str,
    container: &VfioContainer,
) -> Result<Vec<PciHotResetDevice>> {
    let listed = affected_devices(file, name)?;
    let affected: Vec<PciHotResetDevice> = listed.iter().map(|(d, _)| *d).collect();
    if listed.iter().any(|(_, id)| id.is_some()) {
        // A cdev: ownership is the iommufd's; the reset takes no group fds.
        let missing: Vec<PciHotResetDevice> = listed
            .iter()
            .filter(|(_, id)| *id == Some(DEVID_NOT_OWNED))
            .map(|(d, _)| *d)
            .collect();
        if !missing.is_empty() {
            return Err(VfioError::HotResetNotOwned {
                device: name.to_string(),
                missing,
            });
        }
        ioctls::device_pci_hot_reset(file, &pack_hot_reset(&[]))
            .map_err(|e| VfioError::os(RESET_OP, name.to_string(), e))?;
        return Ok(affected);
    }
    let held = container.held_groups();
    let missing = not_held(&affected, &held);
    if !missing.is_empty() {
        return Err(VfioError::HotResetNotOwned {
            device: name.to_string(),
            missing,
        });
    }
    // Only the affected groups: the kernel refuses more fds than affected devices.
    let fds: Vec<i32> = held
        .iter()
        .filter(|g| affected.iter().any(|d| d.group_id == g.id()))
        .map(|g| g.as_raw_fd())
        .collect();
    ioctls::device_pci_hot_reset(file, &pack_hot_reset(&fds))
        .map_err(|e| VfioError::os(RESET_OP, name.to_string(), e))?;
    // `held` (and with it every fd passed) lives until here.
    drop(held);
    Ok(affected)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ioctls::fake::FakeKernel;
    use crate::ErrorKind;

    const HOT: &str = "0000:01:00.0";

    fn dev(group_id: u32, devfn: u8) -> PciHotResetDevice {
        PciHotResetDevice {
            group_id,
            segment: 0,
            bus: 1,
            devfn,
        }
    }

    /// A fake kernel with groups 6 and 7 and a device whose reset affects `affected`.
    fn setup(affected: &[PciHotResetDevice]) -> (FakeKernel, File, usize) {
        let kernel = FakeKernel::new();
        kernel.add_group(6);
        kernel.add_group(7);
        let (index, path) = kernel.add_device(HOT, affected);
        let file = File::open(path).unwrap();
        (kernel, file, index)
    }

    #[test]
    fn the_info_is_asked_twice_and_parsed() {
        let (kernel, file, _) = setup(&[dev(6, 0), dev(7, 1)]);
        let info = hot_reset_info(&file, HOT).unwrap();
        assert_eq!(info, [dev(6, 0), dev(7, 1)]);
        assert_eq!(info[1].address(), "0000:01:00.1");
        assert_eq!(info[1].to_string(), "0000:01:00.1 (group 7)");
        assert_eq!(
            kernel.calls(INFO_OP),
            2,
            "once for the count, once for the list"
        );
    }

    #[test]
    fn counts_the_kernel_cannot_mean_are_refused_before_anything_is_allocated_for_them() {
        type Lie = fn(&mut crate::ioctls::fake::Device);
        let lies: [(Lie, &str, usize); 2] = [
            // More than a PCI segment holds: not even room is made for them.
            (|d| d.reported_count = Some(u32::MAX), "4294967295", 1),
            // Asks for room for 1, then claims to have filled 3.
            (|d| d.filled_count = Some(3), "3 devices in room for 1", 2),
        ];
        for (lie, says, calls) in lies {
            let (kernel, file, index) = setup(&[dev(6, 0)]);
            lie(&mut kernel.state().devices[index]);
            let e = hot_reset_info(&file, HOT).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::OutOfRange);
            assert!(e.to_string().contains(says), "{e}");
            assert_eq!(kernel.calls(INFO_OP), calls);
        }
    }

    #[test]
    fn devices_appearing_between_the_calls_are_asked_for_again() {
        let (kernel, file, index) = setup(&[dev(6, 0)]);
        kernel.state().devices[index].appear_after_query = vec![dev(7, 1)];
        assert_eq!(hot_reset_info(&file, HOT).unwrap(), [dev(6, 0), dev(7, 1)]);
        assert_eq!(kernel.calls(INFO_OP), 3);
    }

    #[test]
    fn a_device_without_bus_or_slot_reset_is_unsupported_with_the_errno_and_a_hint() {
        let (kernel, file, index) = setup(&[dev(6, 0)]);
        kernel.state().devices[index].info_errno = Some(libc::ENODEV);
        let e = hot_reset_info(&file, HOT).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported);
        assert_eq!((e.op(), e.errno()), (INFO_OP, Some(libc::ENODEV)));
        let msg = e.to_string();
        assert!(msg.contains(HOT) && msg.contains("bridge"), "{msg}");
        let c = kernel.container();
        let e = pci_hot_reset(&file, HOT, &c).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported);
        assert_eq!(kernel.calls(RESET_OP), 0);
    }

    #[test]
    fn device_ids_of_a_cdev_take_ownership_from_the_iommufd() {
        // The first word is an iommufd device id: 5 (bound), DEVID_NOT_OWNED.
        let (kernel, file, index) = setup(&[dev(5, 0), dev(DEVID_NOT_OWNED, 1)]);
        kernel.state().devices[index].flags = VFIO_PCI_HOT_RESET_FLAG_DEV_ID;
        let listed = affected_devices(&file, HOT).unwrap();
        assert_eq!(
            listed
                .iter()
                .map(|(d, id)| (d.devfn, *id))
                .collect::<Vec<_>>(),
            [(0, Some(5)), (1, Some(DEVID_NOT_OWNED))]
        );
        let c = kernel.container();
        let e = pci_hot_reset(&file, HOT, &c).unwrap_err();
        assert!(
            matches!(&e, VfioError::HotResetNotOwned { missing, .. } if missing.len() == 1 && missing[0].devfn == 1),
            "{e:?}"
        );
        assert_eq!(kernel.calls(RESET_OP), 0, "refused before the kernel");
    }

    #[test]
    fn a_group_the_container_does_not_hold_is_named_and_the_kernel_not_asked() {
        let (kernel, file, index) = setup(&[dev(6, 0), dev(7, 1)]);
        let c = kernel.container();
        let _g6 = c.group(6).unwrap();
        let e = pci_hot_reset(&file, HOT, &c).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Permission);
        assert_eq!(e.code(), "ERR_VFIO_PERMISSION");
        assert_eq!(e.op(), RESET_OP);
        assert_eq!(e.path().as_deref(), Some("/dev/vfio/7"));
        let msg = e.to_string();
        assert!(msg.contains("0000:01:00.1 (group 7)"), "{msg}");
        assert!(!msg.contains("group 6"), "held groups are not named: {msg}");
        assert!(
            msg.contains("openDevice") && msg.contains("closed there"),
            "{msg}"
        );
        assert_eq!(kernel.calls(RESET_OP), 0);
        assert!(kernel.state().devices[index].resets.is_empty());
    }

    #[test]
    fn the_reset_passes_the_affected_groups_only() {
        let (kernel, file, index) = setup(&[dev(6, 0)]);
        kernel.add_group(8);
        let c = kernel.container();
        let (_g6, _g7, _g8) = (
            c.group(6).unwrap(),
            c.group(7).unwrap(),
            c.group(8).unwrap(),
        );
        assert_eq!(pci_hot_reset(&file, HOT, &c).unwrap(), [dev(6, 0)]);
        assert_eq!(kernel.state().devices[index].resets, [vec![6]]);
    }

    #[test]
    fn the_reset_passes_every_affected_group_once() {
        let (kernel, file, index) = setup(&[dev(6, 0), dev(7, 1), dev(7, 2)]);
        let c = kernel.container();
        let (_g6, _g7) = (c.group(6).unwrap(), c.group(7).unwrap());
        pci_hot_reset(&file, HOT, &c).unwrap();
        assert_eq!(kernel.state().devices[index].resets, [vec![6, 7]]);
    }

    #[test]
    fn a_kernel_refusal_keeps_its_errno_and_says_what_to_do() {
        let (kernel, file, _) = setup(&[dev(6, 0)]);
        let c = kernel.container();
        let _g6 = c.group(6).unwrap();
        kernel.fail_next(RESET_OP, libc::EBUSY);
        let e = pci_hot_reset(&file, HOT, &c).unwrap_err();
        assert_eq!((e.kind(), e.errno()), (ErrorKind::Busy, Some(libc::EBUSY)));
        assert!(
            e.to_string().contains(HOT) && e.to_string().contains("again"),
            "{e}"
        );
        kernel.fail_next(RESET_OP, libc::EINVAL);
        let e = pci_hot_reset(&file, HOT, &c).unwrap_err();
        assert_eq!(e.errno(), Some(libc::EINVAL));
        assert!(e.to_string().contains("hotResetInfo"), "{e}");
    }

    #[test]
    fn the_packed_argument_is_header_then_fds() {
        assert_eq!(pack_hot_reset(&[5, 9]), [20, 0, 2, 5, 9]);
        assert_eq!(pack_hot_reset(&[]), [12, 0, 0]);
    }
}
