// The guest suite: real VFIO in the QEMU guest (see guest/README.md). One file, serial.
export default {
  files: ['__test__/guest/*.spec.ts'],
  extensions: { ts: 'commonjs' },
  nodeArguments: ['--import=tsx'],
  timeout: '300s',
  concurrency: 1,
}
