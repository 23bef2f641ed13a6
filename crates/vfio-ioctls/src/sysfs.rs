//! PCI discovery and driver binding through sysfs.
