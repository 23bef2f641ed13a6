// The ESM entry of vfio-ioctls/testing ("exports" → "./testing" → "import"): re-exports
// the CommonJS build by name, so `import` and `require` share one module instance (one
// installed mock, one VfioError class). Keep the list in sync with ts/testing.ts:
// scripts/test-registry.sh checks it.
import cjs from '../dist/testing.js'

export const { MockSystem, MockDevice, MockDma, MockDmaFault, mockEdu, EDU_REGISTERS } = cjs

export default cjs
