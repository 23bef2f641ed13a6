//! The fake sysfs tree the unit tests of this module run against: five devices
//! in two IOMMU groups (and one without), three drivers, and the control files
//! the kernel would have, as plain files that record what was written.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use vmm_sys_util::tempdir::TempDir;

use super::{PciAddress, Sysfs};

pub(super) const A: &str = "0000:00:03.0"; // in group 5, bound to vfio-pci
pub(super) const B: &str = "0000:00:1f.2"; // in group 7 with C, bound to ahci
pub(super) const C: &str = "0000:00:1f.0"; // in group 7, bound to vfio-pci
pub(super) const D: &str = "0000:00:1c.0"; // bridge in group 7 with pcieport
pub(super) const E: &str = "0000:01:00.0"; // no IOMMU group, no driver

pub(super) struct Fake {
    // Kept so the tree lives as long as the fake; removed on drop.
    _tmp: TempDir,
    pub(super) root: PathBuf,
}

impl Fake {
    pub(super) fn sysfs(&self) -> Sysfs {
        Sysfs::with_root(&self.root)
    }
    pub(super) fn dev(&self, name: &str) -> PathBuf {
        self.root.join("devices/pci0000:00").join(name)
    }
    pub(super) fn read(&self, rel: &str) -> String {
        fs::read_to_string(self.root.join(rel)).unwrap()
    }
    pub(super) fn set_driver(&self, name: &str, driver: &str) {
        let link = self.dev(name).join("driver");
        let _ = fs::remove_file(&link);
        symlink(format!("../../../bus/pci/drivers/{driver}"), link).unwrap();
    }
}

pub(super) fn add_driver(root: &Path, driver: &str) {
    let d = root.join("bus/pci/drivers").join(driver);
    fs::create_dir_all(&d).unwrap();
    fs::write(d.join("bind"), "").unwrap();
    fs::write(d.join("unbind"), "").unwrap();
}

pub(super) fn add_device(
    root: &Path,
    name: &str,
    class: &str,
    group: Option<u32>,
    driver: Option<&str>,
) {
    let dir = root.join("devices/pci0000:00").join(name);
    fs::create_dir_all(&dir).unwrap();
    for (file, value) in [
        ("vendor", "0x8086\n"),
        ("device", "0x1234\n"),
        ("class", class),
        ("revision", "0x10\n"),
        ("subsystem_vendor", "0x1af4\n"),
        ("subsystem_device", "0x1100\n"),
        ("driver_override", "(null)\n"),
        ("numa_node", "-1\n"),
    ] {
        fs::write(dir.join(file), value).unwrap();
    }
    symlink(
        format!("../../../devices/pci0000:00/{name}"),
        root.join("bus/pci/devices").join(name),
    )
    .unwrap();
    if let Some(g) = group {
        let gdir = root
            .join("kernel/iommu_groups")
            .join(g.to_string())
            .join("devices");
        fs::create_dir_all(&gdir).unwrap();
        symlink(
            format!("../../../kernel/iommu_groups/{g}"),
            dir.join("iommu_group"),
        )
        .unwrap();
        symlink(
            format!("../../../../devices/pci0000:00/{name}"),
            gdir.join(name),
        )
        .unwrap();
    }
    if let Some(d) = driver {
        symlink(format!("../../../bus/pci/drivers/{d}"), dir.join("driver")).unwrap();
    }
}

pub(super) fn fake() -> Fake {
    let tmp = TempDir::new_with_prefix("/tmp/vfio-sysfs-test").unwrap();
    let root = fs::canonicalize(tmp.as_path()).unwrap();
    fs::create_dir_all(root.join("bus/pci/devices")).unwrap();
    fs::write(root.join("bus/pci/drivers_probe"), "").unwrap();
    for d in ["vfio-pci", "ahci", "pcieport"] {
        add_driver(&root, d);
    }
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::write(root.join("etc/passwd"), "root").unwrap();
    add_device(&root, A, "0x020000\n", Some(5), Some("vfio-pci"));
    add_device(&root, B, "0x010601\n", Some(7), Some("ahci"));
    add_device(&root, C, "0x060100\n", Some(7), Some("vfio-pci"));
    add_device(&root, D, "0x060400\n", Some(7), Some("pcieport"));
    add_device(&root, E, "0x030000\n", None, None);
    fs::write(
        root.join("devices/pci0000:00").join(E).join("numa_node"),
        "1\n",
    )
    .unwrap();
    fs::write(
        root.join("devices/pci0000:00")
            .join(E)
            .join("driver_override"),
        "vfio-pci\n",
    )
    .unwrap();
    // Not a PCI address: skipped by list.
    fs::create_dir_all(root.join("bus/pci/devices/garbage")).unwrap();
    Fake { _tmp: tmp, root }
}

pub(super) fn addr(s: &str) -> PciAddress {
    s.parse().unwrap()
}
