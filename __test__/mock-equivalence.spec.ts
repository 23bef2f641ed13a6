/**
 * The mock backend's argument checks against the native binding's: the same table of
 * bad inputs, the same codes and messages. On Linux the addon loads on the host and the
 * two are compared here for every call that needs no device; the device calls are
 * compared in the guest (`guest/mock-edu.spec.ts`).
 */
import test from 'ava'
import { MockSystem } from '../ts/testing'
import { ErrorCode } from '../ts/index'
import { pureTable } from './equivalence.shared'

test.serial('the pure checks answer as the native binding does (Linux, where the addon loads)', (t) => {
  t.is(process.platform, 'linux', 'the comparison needs the native addon; the project builds on Linux')
  const real = pureTable()
  let mock: [string, string][]
  {
    using _sys = MockSystem.install()
    mock = pureTable()
  }
  t.is(real.length, mock.length)
  t.true(real.length > 80, `${real.length} rows`)
  // The hypervisor options the mock does not model are the one expected difference,
  // after every value check (which must agree).
  const differing = real.filter(([name, r], i) => mock[i]?.[1] !== r && !(/^new Container\(\{ (kvm|mshv)DeviceFd: (0|1|2147483648|4294967296)\b/.test(name)))
  for (const [name, r] of differing) t.log(`${name}\n  real: ${r}\n  mock: ${mock.find(([n]) => n === name)?.[1]}`)
  t.deepEqual(
    differing.map(([name]) => name),
    [],
  )
})

test.serial('the table itself holds the codes the native rules give', (t) => {
  using _sys = MockSystem.install()
  const rows = new Map(pureTable())
  t.regex(rows.get('parseAddress("00:03.0")') ?? '', /^ok 0000:00:03\.0$/)
  t.regex(rows.get('parseAddress("ABCD:Ef:1F.7")') ?? '', /^ok abcd:ef:1f\.7$/)
  t.regex(rows.get('parseAddress("0000:00:03.8")') ?? '', new RegExp(`^${ErrorCode.INVALID_ARGUMENT}: parse PCI address: "0000:00:03.8" is not a PCI address`))
  t.regex(rows.get('new Container({ kvmDeviceFd: -1 })') ?? '', new RegExp(`^${ErrorCode.OUT_OF_RANGE}: new Container: kvmDeviceFd must be in \\[0, 4294967295\\], got -1$`))
  t.regex(rows.get('new Container({ kvmDeviceFd: 1.5 })') ?? '', new RegExp(`^${ErrorCode.INVALID_ARGUMENT}: new Container: kvmDeviceFd must be an integer, got 1.5$`))
  t.regex(rows.get('new Container({ kvmDeviceFd: 2147483648 })') ?? '', new RegExp(`^${ErrorCode.OUT_OF_RANGE}: new Container: kvmDeviceFd 2147483648 is not a file descriptor$`))
  t.regex(rows.get('new Container({ path: "" })') ?? '', new RegExp(`^${ErrorCode.INVALID_ARGUMENT}: new Container: path must not be empty$`))
  t.regex(rows.get('closedMessage(device)') ?? '', /^ok the device is closed; open it again$/)
})
