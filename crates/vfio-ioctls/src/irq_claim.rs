//! Exclusive ownership of a device's IRQ indices.
//!
//! The kernel lets any `VFIO_DEVICE_SET_IRQS` replace the eventfds of an enabled index,
//! so two owners of one index silently steal each other's vectors, and disabling one
//! disables the other. An [`IrqClaim`] is the one owner of an index: a second claim
//! is refused with [`ErrorKind::Busy`](crate::ErrorKind::Busy) before the kernel is
//! asked, and so is a claim of MSI while INTx is claimed (a PCI function uses one of
//! INTx, MSI and MSI-X at a time). The claim ends when it is dropped.

use std::sync::{Arc, MutexGuard};

use vfio_bindings::bindings::vfio::VFIO_IRQ_INFO_NORESIZE;
use vmm_sys_util::eventfd::EventFd;

use crate::device::VfioDevice;
use crate::error::{Result, VfioError};
use crate::irq::pci_irq;

/// The vectors `[start, start + count)` one claim holds of an index.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) struct ClaimedVectors {
    pub start: u32,
    pub count: u32,
}

/// The claims of one device, by IRQ index.
pub(crate) type IrqClaims = std::sync::Mutex<Vec<Option<ClaimedVectors>>>;

/// The name of an IRQ index in messages.
///
/// ```
/// use vfio_ioctls::{irq_index_name, pci_irq};
///
/// assert_eq!(irq_index_name(pci_irq::MSIX), "MSI-X (index 2)");
/// assert_eq!(irq_index_name(pci_irq::INTX), "INTx (index 0)");
/// assert_eq!(irq_index_name(9), "IRQ index 9");
/// ```
pub fn irq_index_name(index: u32) -> String {
    match index {
        pci_irq::INTX => "INTx (index 0)".into(),
        pci_irq::MSI => "MSI (index 1)".into(),
        pci_irq::MSIX => "MSI-X (index 2)".into(),
        pci_irq::ERR => "ERR (index 3)".into(),
        pci_irq::REQ => "REQ (index 4)".into(),
        other => format!("IRQ index {other}"),
    }
}

/// The one owner of vectors `[start, start + count)` of an IRQ index of a device.
#[derive(Debug)]
pub struct IrqClaim {
    device: Arc<VfioDevice>,
    index: u32,
    vectors: ClaimedVectors,
}

impl VfioDevice {
    fn claims(&self) -> MutexGuard<'_, Vec<Option<ClaimedVectors>>> {
        crate::sync::lock(&self.irq_claims)
    }

    /// Claims vectors `[start, start + count)` of IRQ `index` for one owner.
    ///
    /// Nothing is asked of the kernel: [`IrqClaim::enable`] attaches the eventfds.
    ///
    /// # Errors
    /// `OutOfRange` for an absent index or vectors past its count (so no eventfd is
    /// ever made for vectors that do not exist); `Unsupported` for an index that takes
    /// no eventfds; `Busy` when the index is claimed already (MSI and MSI-X cannot be
    /// resized while enabled: close the first owner and claim every vector at once), or
    /// when another of INTx, MSI and MSI-X is claimed on a PCI device.
    pub fn claim_irq(self: &Arc<Self>, index: u32, start: u32, count: u32) -> Result<IrqClaim> {
        const OP: &str = "claim_irq";
        let irq = *self.irq(OP, index)?;
        self.check_vectors(OP, &irq, start, count)?;
        if !irq.eventfd() {
            return Err(VfioError::unsupported(
                OP,
                format!(
                    "{} of {} does not take eventfds",
                    irq_index_name(index),
                    self.name()
                ),
            ));
        }
        let mut claims = self.claims();
        if let Some(held) = claims.get(index as usize).copied().flatten() {
            let resize = if irq.flags & VFIO_IRQ_INFO_NORESIZE != 0 {
                "; the kernel cannot resize it while enabled (VFIO_IRQ_INFO_NORESIZE): close that \
                 Interrupts and enable every vector you need at once"
            } else {
                "; close that Interrupts first"
            };
            return Err(VfioError::busy(
                OP,
                format!(
                    "{} of {} is enabled already, vectors [{}, {}), by a live Interrupts{resize}",
                    irq_index_name(index),
                    self.name(),
                    held.start,
                    held.start + held.count
                ),
            ));
        }
        let exclusive = [pci_irq::INTX, pci_irq::MSI, pci_irq::MSIX];
        if self.info().is_pci() && exclusive.contains(&index) {
            if let Some(&other) = exclusive
                .iter()
                .find(|&&i| i != index && claims.get(i as usize).copied().flatten().is_some())
            {
                return Err(VfioError::busy(
                    OP,
                    format!(
                        "{} of {} is enabled by a live Interrupts; a PCI function uses one of INTx, \
                         MSI and MSI-X at a time: close it before enabling {}",
                        irq_index_name(other),
                        self.name(),
                        irq_index_name(index)
                    ),
                ));
            }
        }
        if claims.len() <= index as usize {
            claims.resize(index as usize + 1, None);
        }
        let vectors = ClaimedVectors { start, count };
        claims[index as usize] = Some(vectors);
        Ok(IrqClaim {
            device: self.clone(),
            index,
            vectors,
        })
    }

    /// The vectors `(start, count)` a live [`IrqClaim`] holds of IRQ `index`, if any.
    pub fn claimed_irq(&self, index: u32) -> Option<(u32, u32)> {
        self.claims()
            .get(index as usize)
            .copied()
            .flatten()
            .map(|v| (v.start, v.count))
    }
}

impl IrqClaim {
    /// The device.
    pub fn device(&self) -> &Arc<VfioDevice> {
        &self.device
    }

    /// The IRQ index.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The first claimed vector.
    pub fn start(&self) -> u32 {
        self.vectors.start
    }

    /// The number of claimed vectors.
    pub fn count(&self) -> u32 {
        self.vectors.count
    }

    /// Checks that `vector` is one of the claimed vectors.
    ///
    /// # Errors
    /// `OutOfRange`, naming the claimed vectors.
    pub fn check_vector(&self, op: &'static str, vector: u32) -> Result<()> {
        let ClaimedVectors { start, count } = self.vectors;
        if vector >= start && vector - start < count {
            return Ok(());
        }
        Err(VfioError::out_of_range(
            op,
            format!(
                "vector {vector} is not one of these interrupts: {} of {} has vectors [{start}, {}) enabled",
                irq_index_name(self.index),
                self.device.name(),
                start + count
            ),
        ))
    }

    /// Attaches one eventfd per claimed vector and enables them.
    ///
    /// # Errors
    /// `InvalidArgument` when `event_fds` does not have one fd per claimed vector; the
    /// kernel's errno otherwise.
    pub fn enable(&self, event_fds: &[&EventFd]) -> Result<()> {
        if event_fds.len() != self.vectors.count as usize {
            return Err(VfioError::invalid(
                "enable_irq",
                format!(
                    "{} eventfds given for {} claimed vectors",
                    event_fds.len(),
                    self.vectors.count
                ),
            ));
        }
        self.device
            .enable_irq_from(self.index, self.vectors.start, event_fds)
    }

    /// Disables the index (every vector of it).
    ///
    /// # Errors
    /// The kernel's errno; `EINVAL` when the index is not enabled.
    pub fn disable(&self) -> Result<()> {
        self.device.try_disable_irq(self.index)
    }
}

impl Drop for IrqClaim {
    fn drop(&mut self) {
        if let Some(slot) = self.device.claims().get_mut(self.index as usize) {
            *slot = None;
        }
    }
}
