import test from 'ava'
import { Container, features, pageSize } from '../ts/index'
import { throwsCode } from './helpers'

test('a missing container node gives ERR_VFIO_NOT_FOUND with errno, syscall and path', (t) => {
  const err = throwsCode(t, () => new Container({ path: '/nonexistent/vfio' }), 'ERR_VFIO_NOT_FOUND') as unknown as {
    errno: number
    syscall: string
    path: string
  }
  t.is(err.errno, 2)
  t.is(err.syscall, 'open')
  t.is(err.path, '/nonexistent/vfio')
})

test('a node that is not a VFIO container is unsupported (ENOTTY)', (t) => {
  const err = throwsCode(t, () => new Container({ path: '/dev/null' }), 'ERR_VFIO_UNSUPPORTED') as unknown as {
    errno: number
    syscall: string
  }
  t.is(err.errno, 25)
  t.is(err.syscall, 'VFIO_GET_API_VERSION')
})

test('bad options are refused before any system call', (t) => {
  throwsCode(t, () => new Container(null as never), 'ERR_VFIO_INVALID_ARGUMENT')
  throwsCode(t, () => new Container({ kvmDeviceFd: -1 }), 'ERR_VFIO_OUT_OF_RANGE')
  throwsCode(t, () => new Container({ kvmDeviceFd: 1.5 }), 'ERR_VFIO_INVALID_ARGUMENT')
  throwsCode(t, () => new Container({ path: '' }), 'ERR_VFIO_INVALID_ARGUMENT')
  throwsCode(t, () => new Container({ kvmDeviceFd: 3, createKvmVm: true }), 'ERR_VFIO_INVALID_ARGUMENT')
  throwsCode(t, () => new Container({ kvmDeviceFd: 3, mshvDeviceFd: 4 }), 'ERR_VFIO_INVALID_ARGUMENT')
  throwsCode(t, () => new Container({ mshvDeviceFd: -3 }), 'ERR_VFIO_OUT_OF_RANGE')
})

test('hypervisor device fds that are not open are refused with EBADF', (t) => {
  for (const options of [{ kvmDeviceFd: 1_000_000 }, { mshvDeviceFd: 1_000_000 }]) {
    const err = throwsCode(t, () => new Container(options), 'ERR_VFIO_IO') as unknown as { errno: number; syscall: string }
    t.is(err.errno, 9)
    t.is(err.syscall, 'dup')
  }
})

test('features and page size come from the binary', (t) => {
  t.deepEqual(features(), ['kvm', 'mshv', 'vfio_cdev'])
  t.is(pageSize(), 4096)
})

test('the iommu option is checked before any system call', (t) => {
  for (const iommu of ['vfio', '', 'IOMMUFD', 3, null]) {
    const err = t.throws(() => new Container({ iommu: iommu as never }), { instanceOf: TypeError })
    t.regex(err?.message ?? '', /iommu must be/)
  }
})

test('the iommufd backends open /dev/iommu or the given node, with errno, syscall and path', (t) => {
  for (const iommu of ['iommufd', 'iommufd-compat'] as const) {
    const err = throwsCode(t, () => new Container({ iommu, path: '/nonexistent/iommu' }), 'ERR_VFIO_NOT_FOUND') as unknown as {
      errno: number
      syscall: string
      path: string
    }
    t.is(err.errno, 2)
    t.is(err.syscall, 'open')
    t.is(err.path, '/nonexistent/iommu')
  }
  // A node that is no iommufd: the IOAS allocation (native) or the API version (compat) is refused.
  const native = throwsCode(t, () => new Container({ iommu: 'iommufd', path: '/dev/null' }), 'ERR_VFIO_UNSUPPORTED') as unknown as {
    errno: number
    syscall: string
  }
  t.is(native.errno, 25)
  t.is(native.syscall, 'IOMMU_IOAS_ALLOC')
  const compat = throwsCode(t, () => new Container({ iommu: 'iommufd-compat', path: '/dev/null' }), 'ERR_VFIO_UNSUPPORTED') as unknown as {
    syscall: string
  }
  t.is(compat.syscall, 'VFIO_GET_API_VERSION')
})
