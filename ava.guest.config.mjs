// The guest suite: real VFIO in the QEMU guest (see guest/README.md). One file, serial.
export default {
  files: ['__test__/guest/*.spec.ts'],
  extensions: { ts: 'commonjs' },
  nodeArguments: ['--import=tsx'],
  // ava's timeout is inactivity between test results: the 2,000-cycle soak alone takes
  // 2 minutes under TCG and more on a loaded host (ava 7's TAP reporter then crashes
  // reporting the timeout), so the guard is generous.
  timeout: '600s',
  concurrency: 1,
}
