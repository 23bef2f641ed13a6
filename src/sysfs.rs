//! PCI discovery and binding, from sysfs.

use napi::bindgen_prelude::AsyncTask;
use napi_derive::napi;
use vfio_ioctls::sysfs::{BindOutcome, PciAddress, PciDeviceInfo, Sysfs};

use crate::error::{to_opt_text, to_text, IntoJs};
use crate::task::{self, CoreTask};

/// A PCI device as sysfs shows it.
#[napi(object)]
pub struct PciDevice {
    /// `DDDD:BB:DD.F`.
    pub address: String,
    /// sysfs directory.
    pub sysfs_path: String,
    /// Vendor id.
    pub vendor: u32,
    /// Device id.
    pub device: u32,
    /// 24-bit class code.
    pub class: u32,
    /// Revision.
    pub revision: u32,
    /// Subsystem vendor id.
    pub subsystem_vendor: u32,
    /// Subsystem device id.
    pub subsystem_device: u32,
    /// Bound driver.
    pub driver: Option<String>,
    /// `driver_override`.
    pub driver_override: Option<String>,
    /// IOMMU group.
    pub iommu_group: Option<u32>,
    /// Other devices of the group.
    pub group_members: Vec<String>,
    /// NUMA node.
    pub numa_node: Option<i32>,
    /// Usable through VFIO now.
    pub vfio_usable: bool,
}

fn to_js(d: PciDeviceInfo) -> PciDevice {
    PciDevice {
        address: d.address.to_string(),
        sysfs_path: d.sysfs_path.display().to_string(),
        vendor: d.vendor.into(),
        device: d.device.into(),
        class: d.class,
        revision: d.revision.into(),
        subsystem_vendor: d.subsystem_vendor.into(),
        subsystem_device: d.subsystem_device.into(),
        driver: d.driver,
        driver_override: d.driver_override,
        iommu_group: d.iommu_group,
        group_members: d.group_members,
        numa_node: d.numa_node,
        vfio_usable: d.vfio_usable,
    }
}

/// The sysfs at `root` (a fake tree, in tests), or `/sys`.
pub(crate) fn sysfs(op: &str, root: Option<String>) -> napi::Result<Sysfs> {
    Ok(to_opt_text(op, "root", root)?
        .map(Sysfs::with_root)
        .unwrap_or_default())
}

/// Longer than any PCI address (`DDDD:BB:DD.F` is 12 characters).
const MAX_ADDRESS: usize = 64;

fn parse(op: &str, address: String) -> napi::Result<PciAddress> {
    let address = to_text(op, "address", address)?;
    if address.len() > MAX_ADDRESS {
        return Err(crate::error::invalid(
            op,
            &format!(
                "address is {} bytes long; a PCI address is DDDD:BB:DD.F",
                address.len()
            ),
        ));
    }
    address.parse::<PciAddress>().js()
}

/// Every PCI device, sorted by address. `root` replaces `/sys` (for tests).
#[napi]
pub fn list_pci_devices(root: Option<String>) -> napi::Result<Vec<PciDevice>> {
    Ok(sysfs("listDevices", root)?
        .list_pci_devices()
        .js()?
        .into_iter()
        .map(to_js)
        .collect())
}

/// Every PCI device, on the libuv pool (a Promise).
#[napi(ts_return_type = "Promise<Array<PciDevice>>")]
pub fn list_pci_devices_async(
    root: Option<String>,
) -> napi::Result<AsyncTask<CoreTask<Vec<PciDeviceInfo>, Vec<PciDevice>>>> {
    let sysfs = sysfs("listDevicesAsync", root)?;
    Ok(task::spawn(
        move || sysfs.list_pci_devices(),
        |list| list.into_iter().map(to_js).collect(),
    ))
}

/// One PCI device.
#[napi]
pub fn pci_device(address: String, root: Option<String>) -> napi::Result<PciDevice> {
    let address = parse("getDevice", address)?;
    Ok(to_js(sysfs("getDevice", root)?.pci_device(&address).js()?))
}

/// Normalizes a PCI address (`00:03.0` → `0000:00:03.0`), or throws.
#[napi]
pub fn parse_pci_address(address: String) -> napi::Result<String> {
    Ok(parse("parseAddress", address)?.to_string())
}

/// The outcome of `bindVfio`.
#[napi(object)]
pub struct BindResult {
    /// The driver the device had.
    pub previous_driver: Option<String>,
    /// It was bound to vfio-pci already.
    pub already_bound: bool,
}

/// Binds a device to vfio-pci, unbinding it from its driver first.
#[napi]
pub fn bind_vfio(address: String, root: Option<String>) -> napi::Result<BindResult> {
    let address = parse("bind", address)?;
    Ok(bind_result(sysfs("bind", root)?.bind_vfio(&address).js()?))
}

fn bind_result(outcome: BindOutcome) -> BindResult {
    BindResult {
        previous_driver: outcome.previous_driver,
        already_bound: outcome.already_bound,
    }
}

/// `bindVfio` on the libuv pool (a Promise).
#[napi(ts_return_type = "Promise<BindResult>")]
pub fn bind_vfio_async(
    address: String,
    root: Option<String>,
) -> napi::Result<AsyncTask<CoreTask<BindOutcome, BindResult>>> {
    let address = parse("bindAsync", address)?;
    let sysfs = sysfs("bindAsync", root)?;
    Ok(task::spawn(move || sysfs.bind_vfio(&address), bind_result))
}

/// `unbindVfio` on the libuv pool (a Promise).
#[napi(ts_return_type = "Promise<string | null>")]
pub fn unbind_vfio_async(
    address: String,
    restore: Option<String>,
    root: Option<String>,
) -> napi::Result<AsyncTask<CoreTask<Option<String>, Option<String>>>> {
    let address = parse("unbindAsync", address)?;
    let restore = to_opt_text("unbindAsync", "restore", restore)?;
    let sysfs = sysfs("unbindAsync", root)?;
    Ok(task::spawn(
        move || sysfs.unbind_vfio(&address, restore.as_deref()),
        |driver| driver,
    ))
}

/// Unbinds a device from vfio-pci and lets its driver (or `restore`) take it.
#[napi]
pub fn unbind_vfio(
    address: String,
    restore: Option<String>,
    root: Option<String>,
) -> napi::Result<Option<String>> {
    let address = parse("unbind", address)?;
    let restore = to_opt_text("unbind", "restore", restore)?;
    sysfs("unbind", root)?
        .unbind_vfio(&address, restore.as_deref())
        .js()
}
