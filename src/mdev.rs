//! Mediated devices through sysfs (the core's `sysfs/mdev.rs`): their types, creation
//! and removal. Writes go to the libuv pool: the parent's driver runs in them.

use crate::error::{to_text, IntoJs};
use crate::sysfs::sysfs;
use crate::task::{self, CoreTask};
use napi::bindgen_prelude::AsyncTask;
use napi_derive::napi;

/// One type of mdev a parent can create.
#[napi(object)]
pub struct MdevType {
    /// The parent device (`mtty`, or a PCI address).
    pub parent: String,
    /// The type's id (`mtty-1`).
    pub id: String,
    /// Its name, if the parent gives one.
    pub name: Option<String>,
    /// Its description, if any.
    pub description: Option<String>,
    /// The VFIO device API of its devices (`vfio-pci`).
    pub device_api: Option<String>,
    /// How many more can be created now.
    pub available_instances: Option<u32>,
}

/// Every mdev type of every parent. `root` replaces `/sys` (for tests).
#[napi]
pub fn mdev_types(root: Option<String>) -> napi::Result<Vec<MdevType>> {
    Ok(sysfs("mdevTypes", root)?
        .mdev_types()
        .js()?
        .into_iter()
        .map(|t| MdevType {
            parent: t.parent,
            id: t.id,
            name: t.name,
            description: t.description,
            device_api: t.device_api,
            available_instances: t.available_instances,
        })
        .collect())
}

/// The UUIDs of the mdevs that exist.
#[napi]
pub fn mdev_devices(root: Option<String>) -> napi::Result<Vec<String>> {
    sysfs("mdevDevices", root)?.mdev_devices().js()
}

/// Creates an mdev of `type_id` under `parent` named `uuid`; resolves with its sysfs path.
#[napi(ts_return_type = "Promise<string>")]
pub fn create_mdev(
    parent: String,
    type_id: String,
    uuid: String,
    root: Option<String>,
) -> napi::Result<AsyncTask<CoreTask<std::path::PathBuf, String>>> {
    const OP: &str = "createMdev";
    let parent = to_text(OP, "parent", parent)?;
    let type_id = to_text(OP, "type", type_id)?;
    let uuid = to_text(OP, "uuid", uuid)?;
    let sysfs = sysfs(OP, root)?;
    Ok(task::spawn(
        move || sysfs.create_mdev(&parent, &type_id, &uuid),
        |p| p.display().to_string(),
    ))
}

/// Removes the mdev `uuid` (it must not be open).
#[napi(ts_return_type = "Promise<void>")]
pub fn remove_mdev(
    uuid: String,
    root: Option<String>,
) -> napi::Result<AsyncTask<CoreTask<(), ()>>> {
    let uuid = to_text("removeMdev", "uuid", uuid)?;
    let sysfs = sysfs("removeMdev", root)?;
    Ok(task::spawn(move || sysfs.remove_mdev(&uuid), |()| ()))
}
