// The types of the ESM entry of vfio-ioctls/testing (esm/testing.mjs): the declarations
// of the CommonJS build, re-exported as an ES module (see esm/index.d.mts).
import cjs from '../dist/testing.js'

export * from '../dist/testing.js'
export default cjs
