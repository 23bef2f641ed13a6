//! Mediated devices (mdev): the types their parents offer, creating one, removing one.
//!
//! A parent device (e.g. the `mtty` sample, or a GPU with vGPU support) lists what it
//! can create under `<root>/class/mdev_bus/<parent>/mdev_supported_types/<type>/`;
//! writing a UUID to that type's `create` makes the device
//! `<root>/bus/mdev/devices/<uuid>`, with its own IOMMU group, opened through VFIO by
//! its UUID. Writing `1` to its `remove` removes it.
//!
//! Only those two control files are ever written, and only after the parent, type and
//! UUID have been checked to be plain names (a UUID in its canonical form).

use std::fs;
use std::path::{Path, PathBuf};

use super::files::{path_str, read_optional, write_file};
use super::parse::validate_driver_name;
use super::Sysfs;
use crate::error::{Result, VfioError};

/// One type of mdev a parent can create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MdevType {
    /// The parent device (`mtty`, or a PCI address).
    pub parent: String,
    /// The type's id, e.g. `mtty-1` (the directory's name).
    pub id: String,
    /// Its `name` file, if any (e.g. `Single port serial`).
    pub name: Option<String>,
    /// Its `description` file, if any.
    pub description: Option<String>,
    /// The VFIO device API of the devices it makes (`vfio-pci`...).
    pub device_api: Option<String>,
    /// How many more instances can be created now.
    pub available_instances: Option<u32>,
}

/// Whether `s` is a UUID in its canonical form (`8-4-4-4-12` hex digits), as the
/// kernel's `create` files take it and mdev device directories are named.
///
/// ```
/// use vfio_ioctls::sysfs::is_mdev_uuid;
///
/// assert!(is_mdev_uuid("83b8f4f2-509f-382f-3c1e-e6bfe0fa1001"));
/// assert!(!is_mdev_uuid("83b8f4f2-509f-382f-3c1e-e6bfe0fa100"));
/// assert!(!is_mdev_uuid("../../../../etc/passwd"));
/// ```
pub fn is_mdev_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn check_uuid(op: &'static str, uuid: &str) -> Result<()> {
    if is_mdev_uuid(uuid) {
        Ok(())
    } else {
        Err(VfioError::invalid(
            op,
            format!(
                "{uuid:?} is not a UUID in canonical form (8-4-4-4-12 hex digits, e.g. \
                 83b8f4f2-509f-382f-3c1e-e6bfe0fa1001; `uuidgen` makes one)"
            ),
        ))
    }
}

fn check_name(op: &'static str, what: &str, name: &str) -> Result<()> {
    validate_driver_name(name)
        .map_err(|_| VfioError::invalid(op, format!("{name:?} is not a plain {what} name")))
}

fn trimmed(content: Option<String>) -> Option<String> {
    content
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

impl Sysfs {
    /// `<root>/class/mdev_bus`: one entry per mdev parent.
    fn mdev_bus_dir(&self) -> PathBuf {
        self.root().join("class").join("mdev_bus")
    }

    /// `<root>/bus/mdev/devices/<uuid>`.
    pub fn mdev_dir(&self, uuid: &str) -> PathBuf {
        self.root()
            .join("bus")
            .join("mdev")
            .join("devices")
            .join(uuid)
    }

    /// Every mdev type of every parent, sorted by parent then type. None without the
    /// mdev module or without parents.
    ///
    /// # Errors
    /// As the module documents, for a directory or file that cannot be read.
    pub fn mdev_types(&self) -> Result<Vec<MdevType>> {
        let mut types = Vec::new();
        for parent in sorted_entries(&self.mdev_bus_dir())? {
            let dir = self
                .mdev_bus_dir()
                .join(&parent)
                .join("mdev_supported_types");
            for id in sorted_entries(&dir)? {
                let t = dir.join(&id);
                let available = read_optional(&t.join("available_instances"))?
                    .and_then(|s| s.trim().parse().ok());
                types.push(MdevType {
                    parent: parent.clone(),
                    name: trimmed(read_optional(&t.join("name"))?),
                    description: trimmed(read_optional(&t.join("description"))?),
                    device_api: trimmed(read_optional(&t.join("device_api"))?),
                    available_instances: available,
                    id,
                });
            }
        }
        Ok(types)
    }

    /// The UUIDs of the mdevs that exist (`<root>/bus/mdev/devices`), sorted.
    ///
    /// # Errors
    /// As the module documents.
    pub fn mdev_devices(&self) -> Result<Vec<String>> {
        let dir = self.root().join("bus").join("mdev").join("devices");
        Ok(sorted_entries(&dir)?
            .into_iter()
            .filter(|n| is_mdev_uuid(n))
            .collect())
    }

    /// Creates an mdev of type `type_id` under `parent` with `uuid`; returns its sysfs
    /// directory.
    ///
    /// # Errors
    /// `InvalidArgument` for a parent or type that is not a plain name or a UUID not in
    /// canonical form; `NotFound` (with the types there are) for an unknown parent or
    /// type; the kernel's errno from the write otherwise (EEXIST for a UUID in use,
    /// ENOSPC when no instance is available).
    pub fn create_mdev(&self, parent: &str, type_id: &str, uuid: &str) -> Result<PathBuf> {
        const OP: &str = "create mdev";
        check_name(OP, "parent", parent)?;
        check_name(OP, "mdev type", type_id)?;
        check_uuid(OP, uuid)?;
        let create = self
            .mdev_bus_dir()
            .join(parent)
            .join("mdev_supported_types")
            .join(type_id)
            .join("create");
        if !create.is_file() {
            let known: Vec<String> = self
                .mdev_types()
                .unwrap_or_default()
                .into_iter()
                .map(|t| format!("{}/{}", t.parent, t.id))
                .collect();
            return Err(VfioError::NotFound {
                what: format!("mdev type {parent}/{type_id}"),
                path: create,
                hint: Some(if known.is_empty() {
                    "no mdev parent is registered: load its driver (e.g. `modprobe mtty`)".into()
                } else {
                    format!("the types there are: {}", known.join(", "))
                }),
            });
        }
        write_file(&create, uuid)?;
        Ok(self.mdev_dir(uuid))
    }

    /// Removes the mdev `uuid` (it must not be open).
    ///
    /// # Errors
    /// `InvalidArgument` for a UUID not in canonical form; `NotFound` for no such mdev;
    /// the kernel's errno from the write otherwise (EBUSY while it is open).
    pub fn remove_mdev(&self, uuid: &str) -> Result<()> {
        const OP: &str = "remove mdev";
        check_uuid(OP, uuid)?;
        let remove = self.mdev_dir(uuid).join("remove");
        if !remove.is_file() {
            return Err(VfioError::NotFound {
                what: format!("mdev {uuid}"),
                path: remove,
                hint: Some("list the mdevs there are with mdevDevices()".into()),
            });
        }
        write_file(&remove, "1")
    }

    /// The `mdev_type` link's target of the mdev `uuid` (its type id), if it exists.
    ///
    /// # Errors
    /// `InvalidArgument` for a UUID not in canonical form.
    pub fn mdev_type_of(&self, uuid: &str) -> Result<Option<String>> {
        check_uuid("mdev type", uuid)?;
        super::files::link_name(&self.mdev_dir(uuid).join("mdev_type"))
    }
}

/// The names in `dir`, sorted; none when it does not exist.
fn sorted_entries(dir: &Path) -> Result<Vec<String>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(VfioError::os("read", path_str(dir), e)),
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    Ok(names)
}

/// Reads a file of an mdev type (tests).
#[cfg(test)]
fn read_type_file(sysfs: &Sysfs, parent: &str, id: &str, file: &str) -> String {
    super::files::read_file(
        &sysfs
            .mdev_bus_dir()
            .join(parent)
            .join("mdev_supported_types")
            .join(id)
            .join(file),
    )
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use vmm_sys_util::tempdir::TempDir;

    const U: &str = "83b8f4f2-509f-382f-3c1e-e6bfe0fa1001";

    fn tree() -> (TempDir, Sysfs) {
        let tmp = TempDir::new().unwrap();
        let root = tmp.as_path().to_path_buf();
        for (id, name, avail) in [
            ("mtty-1", "Single port serial", "24"),
            ("mtty-2", "Dual port serial", "12"),
        ] {
            let t = root
                .join("class/mdev_bus/mtty/mdev_supported_types")
                .join(id);
            fs::create_dir_all(&t).unwrap();
            fs::write(t.join("name"), format!("{name}\n")).unwrap();
            fs::write(t.join("available_instances"), format!("{avail}\n")).unwrap();
            fs::write(t.join("device_api"), "vfio-pci\n").unwrap();
            fs::write(t.join("create"), "").unwrap();
        }
        let d = root.join("bus/mdev/devices").join(U);
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("remove"), "").unwrap();
        fs::create_dir_all(root.join("bus/mdev/devices/not-a-uuid")).unwrap();
        (tmp, Sysfs::with_root(root))
    }

    #[test]
    fn lists_types_and_devices() {
        let (_tmp, sysfs) = tree();
        let types = sysfs.mdev_types().unwrap();
        assert_eq!(types.len(), 2);
        assert_eq!(types[0].parent, "mtty");
        assert_eq!(types[0].id, "mtty-1");
        assert_eq!(types[0].name.as_deref(), Some("Single port serial"));
        assert_eq!(types[0].available_instances, Some(24));
        assert_eq!(types[1].device_api.as_deref(), Some("vfio-pci"));
        assert_eq!(sysfs.mdev_devices().unwrap(), [U]);
        // Without the mdev module: nothing, not an error.
        let empty = Sysfs::with_root("/nonexistent-vfio-root");
        assert!(empty.mdev_types().unwrap().is_empty());
        assert!(empty.mdev_devices().unwrap().is_empty());
    }

    #[test]
    fn create_and_remove_write_their_control_files_only() {
        let (_tmp, sysfs) = tree();
        let dir = sysfs.create_mdev("mtty", "mtty-2", U).unwrap();
        assert_eq!(dir, sysfs.mdev_dir(U));
        assert_eq!(read_type_file(&sysfs, "mtty", "mtty-2", "create"), U);
        sysfs.remove_mdev(U).unwrap();
        assert_eq!(
            super::super::files::read_file(&sysfs.mdev_dir(U).join("remove")).unwrap(),
            "1"
        );
    }

    #[test]
    fn an_mdev_opens_by_uuid_or_path_with_its_own_group() {
        use std::os::unix::fs::symlink;
        let f = super::super::fake::fake();
        // As the kernel lays it out: the device under its parent, a bus link to it.
        let dev = f.root.join("devices/virtual/mtty/mtty").join(U);
        fs::create_dir_all(&dev).unwrap();
        fs::create_dir_all(f.root.join("kernel/iommu_groups/12/devices")).unwrap();
        symlink(
            "../../../../../kernel/iommu_groups/12",
            dev.join("iommu_group"),
        )
        .unwrap();
        fs::create_dir_all(f.root.join("bus/mdev/devices")).unwrap();
        symlink(&dev, f.root.join("bus/mdev/devices").join(U)).unwrap();
        let sysfs = f.sysfs();
        for input in [
            U.to_string(),
            format!("{}/bus/mdev/devices/{U}", f.root.display()),
        ] {
            let loc = sysfs.resolve_device(&input).unwrap();
            assert_eq!((loc.name.as_str(), loc.group, loc.address), (U, 12, None));
            assert_eq!(loc.sysfs_path, dev);
        }
        let other = "83b8f4f2-509f-382f-3c1e-e6bfe0fa1002";
        let e = sysfs.resolve_device(other).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(e.path().unwrap().ends_with(other), "{e}");
    }

    #[test]
    fn bad_names_are_refused_before_any_write() {
        let (_tmp, sysfs) = tree();
        for (parent, t, uuid) in [
            ("..", "mtty-1", U),
            ("mtty", "../mtty-1", U),
            ("mtty", "mtty-1", "not-a-uuid"),
            ("mtty", "mtty-1", "83b8f4f2-509f-382f-3c1e-e6bfe0fa1001/.."),
        ] {
            let e = sysfs.create_mdev(parent, t, uuid).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{parent} {t} {uuid}");
        }
        assert_eq!(
            sysfs.remove_mdev("x").unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
        let e = sysfs.create_mdev("mtty", "mtty-9", U).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        crate::error::assert_mentions(&e, &["mtty/mtty-1", "mtty/mtty-2"]);
        let other = "83b8f4f2-509f-382f-3c1e-e6bfe0fa1002";
        assert_eq!(
            sysfs.remove_mdev(other).unwrap_err().kind(),
            ErrorKind::NotFound
        );
    }
}
