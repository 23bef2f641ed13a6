//! Device interrupts: info and `VFIO_DEVICE_SET_IRQS` (enable with eventfds,
//! disable, mask, unmask, trigger, resample).

use std::fs::File;
use std::os::fd::AsRawFd;

use vfio_bindings::bindings::vfio::*;
use vmm_sys_util::eventfd::EventFd;

use crate::device::VfioDevice;
use crate::error::{Result, VfioError};
use crate::ioctls;

/// PCI IRQ indices (`VFIO_PCI_*_IRQ_INDEX`).
pub mod pci_irq {
    /// Legacy INTx.
    pub const INTX: u32 = 0;
    /// MSI.
    pub const MSI: u32 = 1;
    /// MSI-X.
    pub const MSIX: u32 = 2;
    /// PCIe AER error notification.
    pub const ERR: u32 = 3;
    /// Device release request.
    pub const REQ: u32 = 4;
}

/// One IRQ index of a device (`VFIO_DEVICE_GET_IRQ_INFO`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct VfioIrq {
    /// `VFIO_IRQ_INFO_*` flags.
    pub flags: u32,
    /// The IRQ index.
    pub index: u32,
    /// Number of vectors (0 when the device does not implement this index).
    pub count: u32,
}

impl VfioIrq {
    /// Whether eventfds can be attached.
    pub fn eventfd(&self) -> bool {
        self.flags & VFIO_IRQ_INFO_EVENTFD != 0
    }

    /// Whether the IRQ can be masked and unmasked.
    pub fn maskable(&self) -> bool {
        self.flags & VFIO_IRQ_INFO_MASKABLE != 0
    }

    /// Whether the kernel masks the IRQ when it fires (INTx), so it needs an unmask.
    pub fn automasked(&self) -> bool {
        self.flags & VFIO_IRQ_INFO_AUTOMASKED != 0
    }
}

pub(crate) fn get_irq(file: &File, name: &str, index: u32) -> Result<VfioIrq> {
    match ioctls::device_get_irq_info(file, index) {
        Ok(info) => Ok(VfioIrq {
            flags: info.flags,
            index,
            count: info.count,
        }),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(VfioIrq {
            flags: 0,
            index,
            count: 0,
        }),
        Err(e) => Err(VfioError::os(
            "VFIO_DEVICE_GET_IRQ_INFO",
            format!("{name} irq {index}"),
            e,
        )),
    }
}

/// Packs a `vfio_irq_set` with its trailing data into a 4-aligned buffer whose
/// `argsz` is its length.
pub(crate) fn pack_irq_set(
    flags: u32,
    index: u32,
    start: u32,
    count: u32,
    data: &[u8],
) -> Vec<u32> {
    let header = std::mem::size_of::<vfio_irq_set>();
    let len = header + data.len();
    let mut words = vec![0u32; len.div_ceil(4)];
    words[0] = u32::try_from(len).unwrap_or(u32::MAX);
    words[1] = flags;
    words[2] = index;
    words[3] = start;
    words[4] = count;
    for (i, chunk) in data.chunks(4).enumerate() {
        let mut bytes = [0u8; 4];
        bytes[..chunk.len()].copy_from_slice(chunk);
        words[header / 4 + i] = u32::from_ne_bytes(bytes);
    }
    // argsz must be the exact size; the padding word (if any) lies past it.
    words
}

impl VfioDevice {
    /// Every IRQ index, by index (absent ones have `count == 0`).
    pub fn irqs(&self) -> &[VfioIrq] {
        &self.irqs
    }

    /// One IRQ index's info, `None` past the device's IRQ count (upstream's accessor).
    pub fn get_irq_info(&self, irq_index: u32) -> Option<&VfioIrq> {
        self.irqs.get(irq_index as usize)
    }

    pub(crate) fn irq(&self, op: &'static str, index: u32) -> Result<&VfioIrq> {
        self.irqs
            .get(index as usize)
            .filter(|irq| irq.count > 0)
            .ok_or_else(|| {
                VfioError::out_of_range(op, format!("{} has no IRQ index {index}", self.name()))
            })
    }

    fn set_irqs(
        &self,
        op: &'static str,
        flags: u32,
        index: u32,
        start: u32,
        count: u32,
        data: &[u8],
    ) -> Result<()> {
        let set = pack_irq_set(flags, index, start, count, data);
        ioctls::device_set_irqs(self.file(), &set).map_err(|e| {
            VfioError::os(
                "VFIO_DEVICE_SET_IRQS",
                format!("{} irq {index} ({op})", self.name()),
                e,
            )
        })
    }

    pub(crate) fn check_vectors(
        &self,
        op: &'static str,
        irq: &VfioIrq,
        start: u32,
        count: u32,
    ) -> Result<()> {
        let end = start.saturating_add(count);
        if count == 0 || end > irq.count {
            return Err(VfioError::out_of_range(
                op,
                format!(
                    "{}: vectors [{start}, {end}) of IRQ index {} do not fit its {} vector(s)",
                    self.name(),
                    irq.index,
                    irq.count
                ),
            ));
        }
        Ok(())
    }

    /// Attaches `event_fds` to vectors `start..` of IRQ `irq_index` and enables them.
    ///
    /// # Errors
    /// `OutOfRange` for an absent index or more eventfds than vectors; the kernel's errno otherwise.
    pub fn enable_irq_from(
        &self,
        irq_index: u32,
        start: u32,
        event_fds: &[&EventFd],
    ) -> Result<()> {
        const OP: &str = "enable_irq";
        let irq = *self.irq(OP, irq_index)?;
        let count = u32::try_from(event_fds.len()).unwrap_or(u32::MAX);
        self.check_vectors(OP, &irq, start, count)?;
        let data: Vec<u8> = event_fds
            .iter()
            .flat_map(|fd| fd.as_raw_fd().to_ne_bytes())
            .collect();
        self.set_irqs(
            OP,
            VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
            irq_index,
            start,
            count,
            &data,
        )
    }

    /// Attaches `event_fds` to vectors `0..` of IRQ `irq_index` (upstream's signature).
    ///
    /// # Errors
    /// Upstream's `VfioDeviceEnableIrq` for any failure, the structured error (as
    /// [`VfioDevice::enable_irq_from`] returns it) logged first.
    pub fn enable_irq(&self, irq_index: u32, event_fds: Vec<&EventFd>) -> Result<()> {
        self.enable_irq_from(irq_index, 0, &event_fds)
            .map_err(|e| e.into_upstream_as(VfioError::VfioDeviceEnableIrq))
    }

    /// Disables every vector of IRQ `irq_index` (upstream's signature).
    ///
    /// # Errors
    /// Upstream's `VfioDeviceDisableIrq` for any failure, the structured error (as
    /// [`VfioDevice::try_disable_irq`] returns it) logged first.
    pub fn disable_irq(&self, irq_index: u32) -> Result<()> {
        self.try_disable_irq(irq_index)
            .map_err(|e| e.into_upstream_as(VfioError::VfioDeviceDisableIrq))
    }

    /// Disables every vector of IRQ `irq_index`.
    ///
    /// # Errors
    /// `OutOfRange` for an absent index; the kernel's errno otherwise.
    pub fn try_disable_irq(&self, irq_index: u32) -> Result<()> {
        self.irq("disable_irq", irq_index)?;
        self.set_irqs(
            "disable_irq",
            VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER,
            irq_index,
            0,
            0,
            &[],
        )
    }

    /// Fires vector `vector` of IRQ `irq_index` from user space (upstream's signature).
    ///
    /// # Errors
    /// Upstream's `VfioDeviceTriggerIrq` for any failure, the structured error (as
    /// [`VfioDevice::try_trigger_irq`] returns it) logged first.
    pub fn trigger_irq(&self, irq_index: u32, vector: u32) -> Result<()> {
        self.try_trigger_irq(irq_index, vector)
            .map_err(|e| e.into_upstream_as(VfioError::VfioDeviceTriggerIrq))
    }

    /// Fires vector `vector` of IRQ `irq_index` from user space (its eventfd is signalled).
    ///
    /// # Errors
    /// `OutOfRange` for an absent index or vector; the kernel's errno otherwise (`EINVAL`
    /// for a vector that is not enabled).
    pub fn try_trigger_irq(&self, irq_index: u32, vector: u32) -> Result<()> {
        let irq = *self.irq("trigger_irq", irq_index)?;
        self.check_vectors("trigger_irq", &irq, vector, 1)?;
        self.set_irqs(
            "trigger_irq",
            VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER,
            irq_index,
            vector,
            1,
            &[],
        )
    }

    fn mask_action(
        &self,
        op: &'static str,
        action: u32,
        irq_index: u32,
        vector: u32,
    ) -> Result<()> {
        let irq = *self.irq(op, irq_index)?;
        if !irq.maskable() {
            return Err(VfioError::unsupported(
                op,
                format!("IRQ index {irq_index} of {} is not maskable", self.name()),
            ));
        }
        self.check_vectors(op, &irq, vector, 1)?;
        self.set_irqs(
            op,
            VFIO_IRQ_SET_DATA_NONE | action,
            irq_index,
            vector,
            1,
            &[],
        )
    }

    /// Masks vector `vector` of IRQ `irq_index`.
    ///
    /// # Errors
    /// `Unsupported` when the index is not maskable (MSI/MSI-X usually are not).
    pub fn mask_irq_vector(&self, irq_index: u32, vector: u32) -> Result<()> {
        self.mask_action("mask_irq", VFIO_IRQ_SET_ACTION_MASK, irq_index, vector)
    }

    /// Unmasks vector `vector` of IRQ `irq_index`.
    pub fn unmask_irq_vector(&self, irq_index: u32, vector: u32) -> Result<()> {
        self.mask_action("unmask_irq", VFIO_IRQ_SET_ACTION_UNMASK, irq_index, vector)
    }

    /// Masks vector 0 of IRQ `irq_index`.
    pub fn mask_irq(&self, irq_index: u32) -> Result<()> {
        self.mask_irq_vector(irq_index, 0)
    }

    /// Unmasks vector 0 of IRQ `irq_index` (upstream's signature).
    ///
    /// # Errors
    /// Upstream's `VfioDeviceUnmaskIrq` for any failure, the structured error (as
    /// [`VfioDevice::unmask_irq_vector`] returns it) logged first.
    pub fn unmask_irq(&self, irq_index: u32) -> Result<()> {
        self.unmask_irq_vector(irq_index, 0)
            .map_err(|e| e.into_upstream_as(VfioError::VfioDeviceUnmaskIrq))
    }

    /// Sets resample eventfds (INTx): writing one unmasks the line (upstream's signature).
    ///
    /// # Errors
    /// Upstream's `VfioDeviceSetIrqResampleFd` for any failure, the structured error (as
    /// [`VfioDevice::try_set_irq_resample_fd`] returns it) logged first.
    pub fn set_irq_resample_fd(&self, irq_index: u32, event_rfds: Vec<&EventFd>) -> Result<()> {
        self.try_set_irq_resample_fd(irq_index, &event_rfds)
            .map_err(|e| e.into_upstream_as(VfioError::VfioDeviceSetIrqResampleFd))
    }

    /// Sets resample eventfds (INTx): writing one unmasks the line in the kernel.
    ///
    /// # Errors
    /// `OutOfRange` for an absent index or more eventfds than vectors; the kernel's errno
    /// otherwise.
    pub fn try_set_irq_resample_fd(&self, irq_index: u32, event_rfds: &[&EventFd]) -> Result<()> {
        const OP: &str = "set_irq_resample_fd";
        let irq = *self.irq(OP, irq_index)?;
        let count = u32::try_from(event_rfds.len()).unwrap_or(u32::MAX);
        self.check_vectors(OP, &irq, 0, count)?;
        let data: Vec<u8> = event_rfds
            .iter()
            .flat_map(|fd| fd.as_raw_fd().to_ne_bytes())
            .collect();
        self.set_irqs(
            OP,
            VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_UNMASK,
            irq_index,
            0,
            count,
            &data,
        )
    }

    /// Enables MSI with one eventfd per vector (upstream's; errors as [`VfioDevice::enable_irq`]).
    pub fn enable_msi(&self, fds: Vec<&EventFd>) -> Result<()> {
        self.enable_irq(crate::pci_irq::MSI, fds)
    }

    /// Disables MSI (upstream's; errors as [`VfioDevice::disable_irq`]).
    pub fn disable_msi(&self) -> Result<()> {
        self.disable_irq(crate::pci_irq::MSI)
    }

    /// Enables MSI-X with one eventfd per vector (upstream's; errors as [`VfioDevice::enable_irq`]).
    pub fn enable_msix(&self, fds: Vec<&EventFd>) -> Result<()> {
        self.enable_irq(crate::pci_irq::MSIX, fds)
    }

    /// Disables MSI-X (upstream's; errors as [`VfioDevice::disable_irq`]).
    pub fn disable_msix(&self) -> Result<()> {
        self.disable_irq(crate::pci_irq::MSIX)
    }

    /// The largest vector count of INTx, MSI and MSI-X.
    pub fn max_interrupts(&self) -> u32 {
        [
            crate::pci_irq::INTX,
            crate::pci_irq::MSI,
            crate::pci_irq::MSIX,
        ]
        .iter()
        .filter_map(|&i| self.irqs.get(i as usize))
        .map(|irq| irq.count)
        .max()
        .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_header_and_fds() {
        let data: Vec<u8> = [5i32, 9].iter().flat_map(|f| f.to_ne_bytes()).collect();
        let set = pack_irq_set(
            VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
            2,
            3,
            2,
            &data,
        );
        assert_eq!(set, vec![28, 0x24, 2, 3, 2, 5, 9]);
    }

    #[test]
    fn packs_without_data() {
        let set = pack_irq_set(
            VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_MASK,
            0,
            0,
            1,
            &[],
        );
        assert_eq!(set, vec![20, 0x9, 0, 0, 1]);
    }

    #[test]
    fn argsz_is_exact_for_unaligned_data() {
        let set = pack_irq_set(
            VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_ACTION_TRIGGER,
            1,
            0,
            3,
            &[1, 0, 1],
        );
        assert_eq!(set[0], 23);
        assert_eq!(set.len(), 6);
        assert_eq!(set[5].to_ne_bytes(), [1, 0, 1, 0]);
    }
}
