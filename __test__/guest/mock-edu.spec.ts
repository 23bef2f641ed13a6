/**
 * The mock backend checked against the real device path, in the guest: the edu driver's
 * tests that `__test__/mock.spec.ts` runs against the mock on the host run here against
 * QEMU's edu, unchanged; then one table of bad inputs on an open edu runs against the
 * real binding and against the mock (installed in this process for the comparison), and
 * their error codes and messages must agree.
 */
import test from 'ava'
import fs from 'node:fs'
import { sysfs } from '../../ts/index'
import { MockSystem, mockEdu } from '../../ts/testing'
import { eduTests } from '../edu-driver.shared'
import { deviceTable } from '../equivalence.shared'
import { EDU } from './devices'

test.before(() => {
  if (process.env.VFIO_GUEST !== '1' || !fs.existsSync('/dev/vfio/vfio')) {
    throw new Error('the guest suite needs the QEMU guest: run `npm run test:guest`')
  }
  sysfs.bind(EDU)
})

eduTests(test, EDU)

test.serial('mock vs real: the same bad inputs on edu give the same error codes and messages', (t) => {
  const real = deviceTable(EDU)
  let mock: [string, string][]
  {
    using sys = MockSystem.install()
    sys.addDevice(mockEdu({ address: EDU, group: 1 }))
    mock = deviceTable(EDU)
  }
  t.deepEqual(
    mock.map(([name]) => name),
    real.map(([name]) => name),
  )
  const codeOf = (o: string | undefined): string => (o ?? '').split(':')[0] ?? ''
  const codes = real.filter(([name, r], i) => codeOf(mock[i]?.[1]) !== codeOf(r)).map(([name, r]) => `${name}\n  real: ${r}\n  mock: ${mock.find(([n]) => n === name)?.[1]}`)
  const messages = real.filter(([, r], i) => mock[i]?.[1] !== r).map(([name, r]) => `${name}\n  real: ${r}\n  mock: ${mock.find(([n]) => n === name)?.[1]}`)
  t.log(`${real.length} rows; ${messages.length} differ in their message`)
  t.true(real.length > 200)
  t.deepEqual(codes, [])
  t.deepEqual(messages, [])
})
