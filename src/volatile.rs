//! The accessor methods shared by `MappedRegion` and `DmaBuffer`, generated once.

/// Generates `readU8..readU64`, `writeU8..writeU64`, `read` and `write` on a class
/// whose `mem(&self) -> Result<&dyn VolatileAccess>` gives the memory.
macro_rules! volatile_methods {
    ($class:ident) => {
        #[napi]
        impl $class {
            /// Reads an 8-bit value.
            #[napi]
            pub fn read_u8(&self, offset: f64) -> Result<u32> {
                let off = to_u64("readU8", "offset", offset)?;
                self.mem()?.read_u8(off).map(u32::from).js()
            }
            /// Reads an aligned 16-bit value.
            #[napi]
            pub fn read_u16(&self, offset: f64) -> Result<u32> {
                let off = to_u64("readU16", "offset", offset)?;
                self.mem()?.read_u16(off).map(u32::from).js()
            }
            /// Reads an aligned 32-bit value.
            #[napi]
            pub fn read_u32(&self, offset: f64) -> Result<u32> {
                let off = to_u64("readU32", "offset", offset)?;
                self.mem()?.read_u32(off).js()
            }
            /// Reads an aligned 64-bit value.
            #[napi]
            pub fn read_u64(&self, offset: f64) -> Result<BigInt> {
                let off = to_u64("readU64", "offset", offset)?;
                self.mem()?.read_u64(off).map(BigInt::from).js()
            }
            /// Writes an 8-bit value.
            #[napi]
            pub fn write_u8(&self, offset: f64, value: f64) -> Result<()> {
                let off = to_u64("writeU8", "offset", offset)?;
                let value = to_u32("writeU8", "value", value)?;
                let v = u8::try_from(value).map_err(|_| {
                    out_of_range("writeU8", &format!("value {value} does not fit 8 bits"))
                })?;
                self.mem()?.write_u8(off, v).js()
            }
            /// Writes an aligned 16-bit value.
            #[napi]
            pub fn write_u16(&self, offset: f64, value: f64) -> Result<()> {
                let off = to_u64("writeU16", "offset", offset)?;
                let value = to_u32("writeU16", "value", value)?;
                let v = u16::try_from(value).map_err(|_| {
                    out_of_range("writeU16", &format!("value {value} does not fit 16 bits"))
                })?;
                self.mem()?.write_u16(off, v).js()
            }
            /// Writes an aligned 32-bit value.
            #[napi]
            pub fn write_u32(&self, offset: f64, value: f64) -> Result<()> {
                let off = to_u64("writeU32", "offset", offset)?;
                let value = to_u32("writeU32", "value", value)?;
                self.mem()?.write_u32(off, value).js()
            }
            /// Writes an aligned 64-bit value.
            #[napi]
            pub fn write_u64(&self, offset: f64, value: BigInt) -> Result<()> {
                let off = to_u64("writeU64", "offset", offset)?;
                let v = bigint_to_u64("writeU64", "value", &value)?;
                self.mem()?.write_u64(off, v).js()
            }
            /// Copies `length` bytes at `offset` into a new Buffer (the range is checked
            /// before anything is allocated).
            #[napi]
            pub fn read(&self, offset: f64, length: f64) -> Result<Buffer> {
                let off = to_u64("read", "offset", offset)?;
                let len = to_u64("read", "length", length)?;
                Ok(self.mem()?.read_vec(off, len).js()?.into())
            }
            /// Copies `target.length` bytes at `offset` into `target` (no allocation).
            #[napi]
            pub fn read_into(&self, offset: f64, mut target: Uint8Array) -> Result<()> {
                let off = to_u64("readInto", "offset", offset)?;
                let mem = self.mem()?;
                // SAFETY: the typed array's memory is valid for this synchronous call (its JS
                // value is an argument of it) and no JS runs meanwhile. The facade passes
                // only an ArrayBuffer's memory (one thread's): it reads into a
                // SharedArrayBuffer through a copy (ts/validate.ts, readThroughCopy).
                mem.read_bytes(off, unsafe { target.as_mut() }).js()
            }
            /// Replaces each offset in `values` with the aligned 32-bit value read there, in
            /// order, in one call (one array, so nothing JS passes can alias); every offset
            /// is checked before the first read.
            #[napi]
            pub fn read_u32_many(&self, mut values: Uint32Array) -> Result<()> {
                let mem = self.mem()?;
                // SAFETY: as in `read_into` (a shared array goes through a copy).
                mem.read_u32_many(unsafe { values.as_mut() }).js()
            }
            /// Copies `data` to `offset`.
            #[napi]
            pub fn write(&self, offset: f64, data: &[u8]) -> Result<()> {
                let off = to_u64("write", "offset", offset)?;
                self.mem()?.write_bytes(off, data).js()
            }
        }
    };
}

pub(crate) use volatile_methods;
