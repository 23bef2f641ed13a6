// The types of the ESM entry (esm/index.mjs), for TypeScript under `module: node16` /
// `nodenext` / `bundler` with the "import" condition. The implementation is the CommonJS
// build in dist/, and so are its declarations: this file re-exports them as an ES
// module, so that `import` sees ESM types for an ESM file (not CJS types "masquerading"
// as ESM). Named exports as esm/index.mjs has them; the default export is the CommonJS
// module object, as `import cjs from 'vfio-ioctls'` gets it at run time.
import cjs from '../dist/index.js'

export * from '../dist/index.js'
export default cjs
