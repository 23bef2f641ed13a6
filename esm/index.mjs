// The ESM entry of vfio-ioctls ("exports" → "import"). The implementation is the
// CommonJS build in dist/; this wrapper re-exports it so that `import` and `require`
// share one module instance (one native binding, one VfioError class for instanceof).
// Keep the list in sync with ts/index.ts: scripts/test-registry.sh checks it. The types
// are esm/index.d.mts (`export *` of dist/index.d.ts: nothing to keep in sync there).
import cjs from '../dist/index.js'

export const {
  Container,
  Device,
  DmaBuffer,
  DmaSlice,
  DmaPool,
  InterruptWaiter,
  MAX_WAIT_MS,
  MIGRATION_STATES,
  Interrupts,
  Region,
  MappedRegion,
  VfioError,
  VfioTypeError,
  VfioAbortError,
  ErrorCode,
  RegionIndex,
  IrqIndex,
  RegionFlags,
  IrqFlags,
  DeviceFlags,
  Extension,
  PciConfig,
  sysfs,
  barrier,
  features,
  pageSize,
} = cjs

export default cjs
