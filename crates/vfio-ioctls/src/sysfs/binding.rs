//! Binding a device to vfio-pci and releasing it to a host driver, by writing
//! the PCI bus's control files; refused while this process holds the device.

use super::address::PciAddress;
use super::files::{link_name, write_file};
use super::parse::validate_driver_name;
use super::{Sysfs, VFIO_PCI};
use crate::error::{Result, VfioError};
use crate::held;

const HINT_MODPROBE: &str = "is vfio-pci loaded? (modprobe vfio-pci)";

/// What [`Sysfs::bind_vfio`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindOutcome {
    /// The driver the device was unbound from, if any.
    pub previous_driver: Option<String>,
    /// The device was bound to vfio-pci already; nothing was written.
    pub already_bound: bool,
}

impl Sysfs {
    /// Binds the device at `addr` to vfio-pci.
    ///
    /// Checks that vfio-pci is loaded (`<root>/bus/pci/drivers/vfio-pci`)
    /// before touching anything (`Unsupported` otherwise). If the device is
    /// bound to vfio-pci already, writes nothing and reports `already_bound`.
    /// Otherwise unbinds it from its driver (writes the address to
    /// `<dev>/driver/unbind`), writes `vfio-pci` to `<dev>/driver_override`
    /// and the address to `<root>/bus/pci/drivers_probe`, then checks that
    /// the device's driver is vfio-pci (`Unsupported` otherwise).
    ///
    /// Before the first write: `Busy` when this process holds the device open
    /// through VFIO or another of its threads is binding or unbinding it (see
    /// [`crate::held`]).
    pub fn bind_vfio(&self, addr: &PciAddress) -> Result<BindOutcome> {
        let dir = self.existing_device_dir(addr)?;
        let vfio_driver = self.pci_bus_dir().join("drivers").join(VFIO_PCI);
        if !vfio_driver.is_dir() {
            return Err(VfioError::unsupported(
                "bind",
                format!(
                    "cannot bind {addr}: the vfio-pci driver is not loaded ({} does not exist); load it with `modprobe vfio-pci`",
                    vfio_driver.display()
                ),
            ));
        }
        let name = addr.to_string();
        let previous_driver = link_name(&dir.join("driver"))?;
        if previous_driver.as_deref() == Some(VFIO_PCI) {
            return Ok(BindOutcome {
                previous_driver: None,
                already_bound: true,
            });
        }
        // Held until the writes are done: no open of the device meanwhile.
        let _rebind = held::begin_rebind("bind", *addr)?;
        if previous_driver.is_some() {
            write_file(&dir.join("driver").join("unbind"), &name)?;
        }
        write_file(&dir.join("driver_override"), VFIO_PCI)?;
        write_file(&self.pci_bus_dir().join("drivers_probe"), &name)?;

        let now = link_name(&dir.join("driver"))?;
        if now.as_deref() != Some(VFIO_PCI) {
            let previously = match &previous_driver {
                Some(d) => {
                    format!("; it was unbound from {d}, restore it with unbind_vfio(Some({d:?}))")
                }
                None => String::new(),
            };
            return Err(VfioError::unsupported(
                "bind",
                format!(
                    "{addr} is bound to {} after probing, not vfio-pci; {HINT_MODPROBE}{previously}",
                    now.as_deref().unwrap_or("no driver")
                ),
            ));
        }
        Ok(BindOutcome {
            previous_driver,
            already_bound: false,
        })
    }

    /// Unbinds the device at `addr` from vfio-pci and lets a host driver take it.
    ///
    /// Checks first, writing nothing when a check fails:
    /// * `restore`, if given, must be a plain driver name (`[A-Za-z0-9_.-]+`,
    ///   `InvalidArgument`) of a loaded driver (`<root>/bus/pci/drivers/<restore>`,
    ///   `NotFound` with a `modprobe` hint);
    /// * the device must exist (`NotFound`) and be bound to vfio-pci or to no
    ///   driver: one bound to another driver is `InvalidArgument`, except that a
    ///   device already bound to `restore` is left as it is and `Ok(restore)` returned;
    /// * this process must not hold the device open through VFIO, nor another of its
    ///   threads be binding or unbinding it (`Busy`, see [`crate::held`]): the
    ///   kernel would block the unbind until the device is closed, forever.
    ///
    /// Then, if the device is bound to vfio-pci, writes the address to
    /// `<dev>/driver/unbind`; clears `<dev>/driver_override` (writes `"\n"`); writes
    /// the address to `<root>/bus/pci/drivers_probe` so the kernel picks the device's
    /// default driver; and if `restore` names a driver the device did not get, writes
    /// the address to `<root>/bus/pci/drivers/<restore>/bind` (the kernel refuses with
    /// `EBUSY` if the device has another driver by then). Returns the device's driver
    /// afterwards.
    pub fn unbind_vfio(&self, addr: &PciAddress, restore: Option<&str>) -> Result<Option<String>> {
        const OP: &str = "unbind";
        let restore_dir = match restore {
            Some(wanted) => {
                validate_driver_name(wanted)?;
                let driver_dir = self.pci_bus_dir().join("drivers").join(wanted);
                if !driver_dir.is_dir() {
                    return Err(VfioError::NotFound {
                        what: format!("driver {wanted}"),
                        path: driver_dir,
                        hint: Some(format!(
                            "load its module (`modprobe {wanted}`) and retry; {addr} was not unbound"
                        )),
                    });
                }
                Some((wanted, driver_dir))
            }
            None => None,
        };
        let dir = self.existing_device_dir(addr)?;
        let name = addr.to_string();
        let driver_link = dir.join("driver");
        let current = link_name(&driver_link)?;
        match current.as_deref() {
            None | Some(VFIO_PCI) => {}
            Some(other) if restore == Some(other) => return Ok(current),
            Some(other) => {
                return Err(VfioError::invalid(
                    OP,
                    format!(
                        "{addr} is bound to {other}, not vfio-pci; nothing was changed \
                         (unbind only releases devices from vfio-pci)"
                    ),
                ))
            }
        }
        // Held until the writes are done: no open of the device meanwhile.
        let _rebind = held::begin_rebind(OP, *addr)?;
        if current.is_some() {
            write_file(&driver_link.join("unbind"), &name)?;
        }
        write_file(&dir.join("driver_override"), "\n")?;
        // The device has no driver now: let the kernel probe its default one.
        write_file(&self.pci_bus_dir().join("drivers_probe"), &name)?;
        let mut now = link_name(&driver_link)?;
        if let Some((wanted, driver_dir)) = restore_dir {
            if now.as_deref() != Some(wanted) {
                // A driver binds only a device it matches: vfio-pci matches none by id, so
                // name it in driver_override first (as bind_vfio does); others keep no override.
                if wanted == VFIO_PCI {
                    write_file(&dir.join("driver_override"), VFIO_PCI)?;
                }
                write_file(&driver_dir.join("bind"), &name)?;
                now = link_name(&driver_link)?;
            }
        }
        Ok(now)
    }
}

#[cfg(test)]
mod tests {
    use super::super::fake::{add_device, add_driver, addr, fake, Fake, A, B, E};
    use super::super::files::path_str;
    use super::*;
    use crate::ErrorKind;
    use std::fs;
    use std::io;
    use std::os::unix::fs::symlink;
    use std::path::Path;

    #[test]
    fn sysfs_bind_writes_control_files_then_verifies() {
        let f = fake();
        let s = f.sysfs();
        let e = s.bind_vfio(&addr(B)).unwrap_err();
        // The fake kernel does not rebind: the driver is still ahci.
        assert_eq!(e.kind(), ErrorKind::Unsupported);
        assert!(
            matches!(&e, VfioError::Unsupported { op: "bind", message } if message.contains("modprobe vfio-pci"))
        );
        assert_eq!(f.read("bus/pci/drivers/ahci/unbind"), B);
        assert_eq!(
            f.read(&format!("bus/pci/devices/{B}/driver_override")),
            "vfio-pci"
        );
        assert_eq!(f.read("bus/pci/drivers_probe"), B);

        // A device without a driver: nothing to unbind.
        fs::write(f.root.join("bus/pci/drivers_probe"), "").unwrap();
        let e2 = s.bind_vfio(&addr(E)).unwrap_err();
        assert_eq!(e2.kind(), ErrorKind::Unsupported);
        assert_eq!(f.read("bus/pci/drivers_probe"), E);
    }

    #[test]
    fn sysfs_bind_already_bound_writes_nothing() {
        let f = fake();
        let s = f.sysfs();
        let out = s.bind_vfio(&addr(A)).unwrap();
        assert_eq!(
            out,
            BindOutcome {
                previous_driver: None,
                already_bound: true
            }
        );
        assert_eq!(f.read("bus/pci/drivers_probe"), "");
        assert_eq!(f.read("bus/pci/drivers/vfio-pci/unbind"), "");
        assert_eq!(
            f.read(&format!("bus/pci/devices/{A}/driver_override")),
            "(null)\n"
        );
    }

    fn mkfifo(path: &Path) {
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
        let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
        assert_eq!(
            rc,
            0,
            "mkfifo {}: {}",
            path.display(),
            io::Error::last_os_error()
        );
    }

    #[test]
    fn sysfs_bind_succeeds_when_kernel_rebinds() {
        // Emulate the kernel with FIFOs: once driver_override has been written,
        // switch B's driver link to vfio-pci, then accept the drivers_probe write.
        let f = fake();
        let s = f.sysfs();
        let override_path = f.dev(B).join("driver_override");
        let probe_path = f.root.join("bus/pci/drivers_probe");
        fs::remove_file(&override_path).unwrap();
        fs::remove_file(&probe_path).unwrap();
        mkfifo(&override_path);
        mkfifo(&probe_path);
        let link = f.dev(B).join("driver");
        let kernel = std::thread::spawn(move || {
            let written = fs::read_to_string(&override_path).unwrap();
            fs::remove_file(&link).unwrap();
            symlink("../../../bus/pci/drivers/vfio-pci", &link).unwrap();
            let probed = fs::read_to_string(&probe_path).unwrap();
            (written, probed)
        });
        let out = s.bind_vfio(&addr(B)).unwrap();
        assert_eq!(
            out,
            BindOutcome {
                previous_driver: Some("ahci".into()),
                already_bound: false
            }
        );
        assert_eq!(
            kernel.join().unwrap(),
            ("vfio-pci".to_string(), B.to_string())
        );
        assert_eq!(f.read("bus/pci/drivers/ahci/unbind"), B);
        // (driver_override is still a FIFO here, so do not read it through pci_device.)
        assert_eq!(
            link_name(&f.dev(B).join("driver")).unwrap().as_deref(),
            Some("vfio-pci")
        );
    }

    #[test]
    fn sysfs_bind_without_vfio_driver_touches_nothing() {
        let f = fake();
        let s = f.sysfs();
        fs::remove_dir_all(f.root.join("bus/pci/drivers/vfio-pci")).unwrap();
        let e = s.bind_vfio(&addr(B)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported);
        assert!(
            e.to_string().contains("not loaded") && e.to_string().contains("modprobe vfio-pci"),
            "{e}"
        );
        assert_eq!(f.read("bus/pci/drivers/ahci/unbind"), "");
        assert_eq!(
            f.read(&format!("bus/pci/devices/{B}/driver_override")),
            "(null)\n"
        );
        assert_eq!(f.read("bus/pci/drivers_probe"), "");
        assert_eq!(
            s.bind_vfio(&addr("0000:00:05.0")).unwrap_err().kind(),
            ErrorKind::NotFound
        );
    }

    #[test]
    fn sysfs_unbind_writes_expected_files() {
        let f = fake();
        let s = f.sysfs();
        // The fake kernel does not act, so the link still says vfio-pci afterwards.
        let now = s.unbind_vfio(&addr(A), Some("ahci")).unwrap();
        assert_eq!(now.as_deref(), Some("vfio-pci"));
        assert_eq!(f.read("bus/pci/drivers/vfio-pci/unbind"), A);
        assert_eq!(
            f.read(&format!("bus/pci/devices/{A}/driver_override")),
            "\n"
        );
        assert_eq!(f.read("bus/pci/drivers_probe"), A);
        assert_eq!(f.read("bus/pci/drivers/ahci/bind"), A);

        // Emulate the kernel having unbound it: no driver, no restore.
        fs::write(f.root.join("bus/pci/drivers_probe"), "").unwrap();
        fs::remove_file(f.dev(A).join("driver")).unwrap();
        assert_eq!(s.unbind_vfio(&addr(A), None).unwrap(), None);
        assert_eq!(f.read("bus/pci/drivers_probe"), A);

        // Restoring a driver that is already there writes no bind.
        fs::write(f.root.join("bus/pci/drivers/ahci/bind"), "").unwrap();
        assert_eq!(
            s.unbind_vfio(&addr(B), Some("ahci")).unwrap().as_deref(),
            Some("ahci")
        );
        assert_eq!(f.read("bus/pci/drivers/ahci/bind"), "");
        assert_eq!(f.read("bus/pci/drivers/ahci/unbind"), "");

        // A driver that is not loaded.
        let e = s.unbind_vfio(&addr(A), Some("nvme")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(e.to_string().contains("modprobe nvme"), "{e}");
    }

    /// Asserts that no control file of `dev` (bound to `driver`) nor drivers_probe was written.
    fn assert_untouched(f: &Fake, dev: &str, driver: &str) {
        assert_eq!(f.read(&format!("bus/pci/drivers/{driver}/unbind")), "");
        assert_eq!(f.read(&format!("bus/pci/drivers/{driver}/bind")), "");
        assert_eq!(
            f.read(&format!("bus/pci/devices/{dev}/driver_override")),
            "(null)\n"
        );
        assert_eq!(f.read("bus/pci/drivers_probe"), "");
    }

    #[test]
    fn sysfs_unbind_refuses_a_device_of_another_driver() {
        let f = fake();
        let s = f.sysfs();
        add_driver(&f.root, "virtio-pci");
        f.set_driver(B, "virtio-pci");
        for restore in [None, Some("ahci"), Some("vfio-pci")] {
            let e = s.unbind_vfio(&addr(B), restore).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{restore:?}: {e}");
            assert_eq!(
                e.to_string(),
                format!(
                    "unbind: {B} is bound to virtio-pci, not vfio-pci; nothing was changed \
                     (unbind only releases devices from vfio-pci)"
                )
            );
            assert_untouched(&f, B, "virtio-pci");
            assert_eq!(f.read("bus/pci/drivers/ahci/bind"), "");
        }
        // Already on the driver asked for: nothing to do, nothing written.
        assert_eq!(
            s.unbind_vfio(&addr(B), Some("virtio-pci"))
                .unwrap()
                .as_deref(),
            Some("virtio-pci")
        );
        assert_untouched(&f, B, "virtio-pci");
    }

    #[test]
    fn sysfs_unbind_checks_the_restore_driver_before_writing() {
        let f = fake();
        let s = f.sysfs();
        let e = s.unbind_vfio(&addr(A), Some("nosuchdrv")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        let msg = e.to_string();
        assert!(
            msg.contains("modprobe nosuchdrv") && msg.contains(&format!("{A} was not unbound")),
            "{msg}"
        );
        assert_eq!(
            e.path(),
            Some(path_str(&f.root.join("bus/pci/drivers/nosuchdrv")))
        );
        assert_untouched(&f, A, "vfio-pci");
        // Also for a device that does not exist: the driver is checked first.
        assert_eq!(
            s.unbind_vfio(&addr("0000:00:05.0"), Some("nosuchdrv"))
                .unwrap_err()
                .path(),
            e.path()
        );
    }

    #[test]
    fn sysfs_bind_and_unbind_refuse_a_device_this_process_holds() {
        // Own addresses: the registry is process-wide and tests run in parallel.
        const F: &str = "0000:02:00.0"; // bound to vfio-pci
        const G: &str = "0000:02:00.1"; // bound to ahci
        let f = fake();
        let s = f.sysfs();
        add_device(&f.root, F, "0x020000\n", Some(9), Some("vfio-pci"));
        add_device(&f.root, G, "0x010601\n", Some(9), Some("ahci"));

        let held_f = held::register_open(addr(F)).unwrap();
        for restore in [None, Some("ahci")] {
            let e = s.unbind_vfio(&addr(F), restore).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Busy, "{e}");
            assert_eq!(e.code(), "ERR_VFIO_BUSY");
            let msg = e.to_string();
            assert!(
                msg.starts_with("unbind: ")
                    && msg.contains(&format!("holds {F} open"))
                    && msg.contains("close the Device and its MappedRegions and Interrupts first"),
                "{msg}"
            );
            assert_untouched(&f, F, "vfio-pci");
            assert_eq!(f.read("bus/pci/drivers/ahci/bind"), "");
        }
        // Binding it is a no-op (it is on vfio-pci), so it is not refused.
        assert!(s.bind_vfio(&addr(F)).unwrap().already_bound);

        let held_g = held::register_open(addr(G)).unwrap();
        let e = s.bind_vfio(&addr(G)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Busy, "{e}");
        assert!(e.to_string().starts_with("bind: "), "{e}");
        assert_untouched(&f, G, "ahci");
        drop(held_g);

        // A second handle keeps it held until both are gone.
        let again = held::register_open(addr(F)).unwrap();
        drop(held_f);
        assert_eq!(
            s.unbind_vfio(&addr(F), None).unwrap_err().kind(),
            ErrorKind::Busy
        );
        assert_untouched(&f, F, "vfio-pci");
        drop(again);
        assert!(!held::is_held(&addr(F)));
        s.unbind_vfio(&addr(F), None).unwrap();
        assert_eq!(f.read("bus/pci/drivers/vfio-pci/unbind"), F);
        assert_eq!(f.read("bus/pci/drivers_probe"), F);

        // While a rebind of G is in progress, neither a bind nor an open of G goes ahead.
        fs::write(f.root.join("bus/pci/drivers_probe"), "").unwrap();
        let rebind = held::begin_rebind("unbind", addr(G)).unwrap();
        assert_eq!(s.bind_vfio(&addr(G)).unwrap_err().kind(), ErrorKind::Busy);
        assert_eq!(
            held::register_open(addr(G)).unwrap_err().kind(),
            ErrorKind::Busy
        );
        assert_untouched(&f, G, "ahci");
        drop(rebind);
    }

    #[test]
    fn sysfs_unbind_rejects_bad_driver_names_before_writing() {
        let f = fake();
        let s = f.sysfs();
        for bad in ["", ".", "..", "../ahci", "a/b", "ahci\n", "ah ci", "x;rm"] {
            let e = s.unbind_vfio(&addr(A), Some(bad)).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{bad:?}");
        }
        assert_eq!(f.read("bus/pci/drivers/vfio-pci/unbind"), "");
        assert_eq!(f.read("bus/pci/drivers_probe"), "");
        for good in ["ahci", "nvme", "snd_hda_intel", "ixgbe.1-x"] {
            assert!(validate_driver_name(good).is_ok(), "{good}");
        }
    }
}
