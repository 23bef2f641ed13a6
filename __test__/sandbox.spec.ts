import test from 'ava'
import { execFile } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { harnessArgv, main, NVME_DEFAULT_SIZE, parseArgv, UsageError, type SandboxCommand, type SandboxHost } from '../ts/cli'

const RUN_SH = path.join(__dirname, '..', 'guest', 'run.sh')

/** A directory with executable stand-ins for `names` (a PATH for the host checks). */
function fakeBin(...names: string[]): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vfio-sandbox-bin-'))
  for (const n of names) fs.writeFileSync(path.join(dir, n), '#!/bin/sh\nexit 0\n', { mode: 0o755 })
  return dir
}

/** Runs `main` with a fake host whose harness records its argv and exits `rc`. */
async function sandbox(argv: string[], host: SandboxHost = {}, rc = 0): Promise<{ rc: number; err: string; calls: { harness: string; args: string[] }[] }> {
  const err: string[] = []
  const calls: { harness: string; args: string[] }[] = []
  const fake: SandboxHost = {
    platform: 'linux',
    arch: 'x64',
    path: fakeBin('bash', 'qemu-system-x86_64'),
    canInstall: false,
    harness: RUN_SH,
    run: async (harness, args) => {
      calls.push({ harness, args })
      return rc
    },
    ...host,
  }
  const code = await main(['sandbox', ...argv], { log: () => {}, error: (s) => err.push(s) }, { sandbox: fake })
  return { rc: code, err: err.join('\n'), calls }
}

const NVME_64M = { kind: 'nvme', size: NVME_DEFAULT_SIZE } as const

test('sandbox: devices, accelerator, timeout, kernel and the command after --', (t) => {
  const cases: [string[], Omit<SandboxCommand, 'command'>][] = [
    [['sandbox', '--', 'node', 'x.js'], { devices: [{ kind: 'edu' }, NVME_64M], accel: 'auto', verbose: false, argv: ['node', 'x.js'] }],
    [['sandbox', '--device', 'edu', '--', 'true'], { devices: [{ kind: 'edu' }], accel: 'auto', verbose: false, argv: ['true'] }],
    [['sandbox', '--device', 'nvme,size=128M', '--', 'true'], { devices: [{ kind: 'nvme', size: 128 * 2 ** 20 }], accel: 'auto', verbose: false, argv: ['true'] }],
    [['sandbox', '--device=nvme', '--device', 'edu', '--', 'true'], { devices: [NVME_64M, { kind: 'edu' }], accel: 'auto', verbose: false, argv: ['true'] }],
    [['sandbox', '--device', 'edu,nvme,size=1g', '--', 'true'], { devices: [{ kind: 'edu' }, { kind: 'nvme', size: 2 ** 30 }], accel: 'auto', verbose: false, argv: ['true'] }],
    [
      ['--accel', 'tcg', 'sandbox', '--timeout', '30', '--kernel', '6.1.0-48-amd64', '--verbose', '--', 'sh', '-c', 'echo -v --json -- x'],
      { devices: [{ kind: 'edu' }, NVME_64M], accel: 'tcg', timeout: 30, kernel: 'linux-image-6.1.0-48-amd64', verbose: true, argv: ['sh', '-c', 'echo -v --json -- x'] },
    ],
    [['sandbox', '--kernel=linux-image-6.1.0-48-amd64', '--accel=kvm', '--', '--', '-h'], { devices: [{ kind: 'edu' }, NVME_64M], accel: 'kvm', kernel: 'linux-image-6.1.0-48-amd64', verbose: false, argv: ['--', '-h'] }],
  ]
  for (const [argv, expected] of cases) t.deepEqual(parseArgv(argv), { command: 'sandbox', ...expected }, argv.join(' '))
})

test('sandbox: malformed command lines are coded usage errors, exit 2, and nothing runs', async (t) => {
  const bad: [string[], RegExp][] = [
    [['--device', 'gpu', '--', 'true'], /unknown device "gpu" in --device "gpu" \(edu, or nvme\[,size=SIZE\]\)/],
    [['--device', 'edu', '--device', 'edu,nvme', '--', 'true'], /device edu given twice/],
    [['--device', 'edu,', '--', 'true'], /unknown device ""/],
    [['--device', 'size=1G', '--', 'true'], /"size=1G" follows no device/],
    [['--device', 'edu,size=1M', '--', 'true'], /device edu has no option "size" \(it takes none\)/],
    [['--device', 'nvme,sise=1M', '--', 'true'], /device nvme has no option "sise" \(it takes size=SIZE\)/],
    [['--device', 'nvme,size=', '--', 'true'], /bad NVMe size ""/],
    [['--device', 'nvme,size=12X', '--', 'true'], /bad NVMe size "12X"/],
    [['--device', 'nvme,size=512K', '--', 'true'], /NVMe size "512K": from 1M to 1T, a multiple of 4K/],
    [['--device', 'nvme,size=2T', '--', 'true'], /from 1M to 1T/],
    [['--device', 'nvme,size=1048577', '--', 'true'], /a multiple of 4K/],
    [['--accel', 'hvf', '--', 'true'], /bad --accel "hvf" \(auto, kvm or tcg\)/],
    [['--timeout', '0', '--', 'true'], /bad --timeout "0"/],
    [['--timeout', '1.5', '--', 'true'], /bad --timeout "1.5"/],
    [['--kernel', 'vmlinuz', '--', 'true'], /bad --kernel "vmlinuz"/],
    [['node', 'x.js'], /'sandbox' takes its command after '--'/],
    [['node', '--', 'x.js'], /'sandbox' takes its command after '--'/],
    [['--'], /'sandbox' needs a command after '--'/],
    [['--json', '--', 'true'], /'sandbox' does not take --json/],
    [['--restore', 'x', '--', 'true'], /'sandbox' does not take --restore/],
    [['--device', '--', 'true'], /argument missing|ambiguous/],
  ]
  for (const [argv, message] of bad) {
    t.throws(() => parseArgv(['sandbox', ...argv]), { instanceOf: UsageError, message }, argv.join(' '))
    const r = await sandbox(argv)
    t.is(r.rc, 2, argv.join(' '))
    t.deepEqual(r.calls, [])
  }
  const r = await sandbox(['--device', 'gpu', '--', 'true'])
  t.is(r.err, `vfio-ioctls: unknown device "gpu" in --device "gpu" (edu, or nvme[,size=SIZE])\nRun 'vfio-ioctls --help' for usage.`)
  // Options of the sandbox belong to it alone.
  t.throws(() => parseArgv(['list', '--device', 'edu']), { instanceOf: UsageError, message: "'list' does not take --device" })
})

test('sandbox hands guest/run.sh every device (attached and bound), the accelerator, and the command', async (t) => {
  const r = await sandbox(['--device', 'edu', '--', 'node', '--import', 'tsx', 'edu-driver.ts'])
  t.is(r.rc, 0)
  t.deepEqual(r.calls, [{ harness: RUN_SH, args: ['--device', 'edu', '--accel', 'auto', '--bind', 'edu', '--', 'node', '--import', 'tsx', 'edu-driver.ts'] }])
  const all = await sandbox(['--device', 'nvme,size=1536K', '--device', 'edu', '--accel', 'tcg', '--timeout', '300', '--kernel', '6.1.0-48-amd64', '--verbose', '--', 'sh', '-c', 'exit 7'], {}, 7)
  t.is(all.rc, 7) // the command's exit status, as the harness reports it
  t.deepEqual(all.calls[0]?.args, [
    '--device', 'nvme,size=1536K', '--device', 'edu', '--accel', 'tcg', '--timeout', '300', '--kernel', 'linux-image-6.1.0-48-amd64', '--verbose',
    '--bind', 'nvme,edu', '--', 'sh', '-c', 'exit 7',
  ])
  const cmd = parseArgv(['sandbox', '--', 'true'])
  t.deepEqual(cmd.command === 'sandbox' ? harnessArgv(cmd) : [], ['--device', 'edu', '--device', 'nvme,size=64M', '--accel', 'auto', '--bind', 'edu,nvme', '--', 'true'])
  // The package's own harness, found next to dist/ (here ts/).
  t.true(fs.existsSync(RUN_SH))
})

test('sandbox on a host without what it needs: a coded error naming it and how to install it, exit 3', async (t) => {
  const mac = await sandbox(['--', 'true'], { platform: 'darwin', arch: 'arm64' })
  t.is(mac.rc, 3)
  t.regex(mac.err, /^vfio-ioctls sandbox: error: ERR_SANDBOX_UNSUPPORTED: the sandbox needs Linux on x86_64 \(this is darwin on arm64\)/)
  t.is((await sandbox(['--', 'true'], { arch: 'arm64' })).rc, 3)
  const noQemu = await sandbox(['--', 'true'], { path: fakeBin('bash') })
  t.is(noQemu.rc, 3)
  t.regex(noQemu.err, /ERR_SANDBOX_MISSING: QEMU \(qemu-system-x86_64\) not found: install what the sandbox needs with: sudo apt-get install qemu-system-x86 busybox-static cpio xz-utils zstd kmod \(Debian\/Ubuntu\)/)
  t.deepEqual(noQemu.calls, [])
  // As root with apt-get, guest/setup.sh installs QEMU itself: the harness runs.
  t.is((await sandbox(['--', 'true'], { path: fakeBin('bash'), canInstall: true })).calls.length, 1)
  const noBash = await sandbox(['--', 'true'], { path: fakeBin('qemu-system-x86_64') })
  t.is(noBash.rc, 3)
  t.regex(noBash.err, /ERR_SANDBOX_MISSING: bash not found/)
  const noHarness = await sandbox(['--', 'true'], { harness: path.join(os.tmpdir(), 'vfio-no-such-dir', 'run.sh') })
  t.is(noHarness.rc, 3)
  t.regex(noHarness.err, /ERR_SANDBOX_MISSING: the guest harness is not where the package puts it/)
})

/** `bash guest/run.sh ARGS` with `env` added; resolves to its status and output (nothing boots in these). */
function runSh(args: string[], env: Record<string, string>): Promise<{ rc: number; out: string; err: string }> {
  return new Promise((resolve) => {
    execFile('bash', [RUN_SH, ...args], { env: { ...process.env, ...env } }, (error, out, err) => {
      const code = error === null ? 0 : typeof error.code === 'number' ? error.code : -1
      resolve({ rc: code, out, err })
    })
  })
}

test('KVM detection: no device, not a character device, no KVM_GET_API_VERSION answer: TCG, and why', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vfio-kvm-'))
  const file = path.join(dir, 'kvm')
  fs.writeFileSync(file, '')
  const cases: [string, RegExp][] = [
    [path.join(dir, 'none'), /^tcg: .*\/none does not exist \(virtualization off in the firmware, the kvm module not loaded, or a VM without nested virtualization\)\n$/],
    [file, /^tcg: .*\/kvm is not a character device\n$/],
    ['/dev/null', /^tcg: \/dev\/null: KVM_GET_API_VERSION failed: Inappropriate ioctl for device\n$/],
  ]
  for (const [device, out] of cases) {
    const r = await runSh(['--accel', 'auto', '--probe-accel'], { VFIO_GUEST_KVM_DEVICE: device })
    t.is(r.rc, 0, r.err)
    t.regex(r.out, out)
  }
  // --accel kvm refuses such a host before anything is prepared or booted (exit 3).
  const kvm = await runSh(['--accel', 'kvm', '--', 'true'], { VFIO_GUEST_KVM_DEVICE: '/dev/null', VFIO_GUEST_NO_SETUP: '1' })
  t.is(kvm.rc, 3)
  t.regex(kvm.err, /\[guest\] error: --accel kvm: \/dev\/null: KVM_GET_API_VERSION failed/)
  const bad = await runSh(['--accel', 'hvf', '--', 'true'], {})
  t.is(bad.rc, 2)
  t.regex(bad.err, /bad --accel 'hvf' \(tcg, kvm or auto\)/)
})

test('guest/run.sh refuses a device set it cannot build, before booting (exit 2)', async (t) => {
  const cases: [string[], RegExp][] = [
    [['--device', 'gpu'], /unknown device 'gpu' in 'gpu' \(edu, nvme\[,size=SIZE\] or hotedu\)/],
    [['--device', 'edu', '--device', 'edu'], /device 'edu' given twice/],
    [['--device', 'nvme,size=1.5G'], /bad NVMe size '1.5G'/],
    [['--device', 'edu,size=1M'], /device 'edu' takes no options \('size=1M'\)/],
    [['--device', 'edu', '--bind', 'nvme'], /--bind nvme, but the guest has no nvme \(--device\)/],
  ]
  for (const [args, err] of cases) {
    const r = await runSh([...args, '--', 'true'], { VFIO_GUEST_NO_SETUP: '1' })
    t.is(r.rc, 2, args.join(' '))
    t.regex(r.err, err)
  }
})
