//! Safe wrappers over the Linux VFIO user-space API.
#![deny(missing_docs, missing_debug_implementations)]
#![deny(clippy::undocumented_unsafe_blocks, unsafe_op_in_unsafe_fn)]

mod error;
pub mod sysfs;

pub use error::{ErrorKind, Result, VfioError};
