import test from 'ava'
import { ErrorCode, VfioError, VfioTypeError } from '../ts/index'
import { fromNative } from '../ts/errors'
import { native } from '../ts/native'

test('native errors decode into VfioError with code, errno, syscall, path and cause', (t) => {
  const marker = native().errorMarker()
  const raw = new Error(
    `${marker}{"code":"ERR_VFIO_PERMISSION","errno":13,"syscall":"open","path":"/dev/vfio/7","message":"open on /dev/vfio/7 failed"}\nERR_VFIO_PERMISSION: open on /dev/vfio/7 failed`,
  )
  const err = fromNative(raw) as VfioError
  t.true(err instanceof VfioError)
  t.is(err.code, ErrorCode.PERMISSION)
  t.is(err.errno, 13)
  t.is(err.syscall, 'open')
  t.is(err.path, '/dev/vfio/7')
  t.is(err.message, 'open on /dev/vfio/7 failed')
  t.is(err.cause, raw)
})

test('foreign errors pass through untouched', (t) => {
  const raw = new RangeError('something else')
  t.is(fromNative(raw), raw)
  t.is(fromNative('a string'), 'a string')
})

test('type errors are TypeErrors with the invalid-argument code', (t) => {
  const err = new VfioTypeError('x must be a number')
  t.true(err instanceof TypeError)
  t.is(err.code, 'ERR_VFIO_INVALID_ARGUMENT')
})

test('the error codes are stable', (t) => {
  t.deepEqual(Object.values(ErrorCode).sort(), [
    'ERR_VFIO_ABORTED',
    'ERR_VFIO_BUSY',
    'ERR_VFIO_CLOSED',
    'ERR_VFIO_GROUP_NOT_VIABLE',
    'ERR_VFIO_INVALID_ARGUMENT',
    'ERR_VFIO_IO',
    'ERR_VFIO_MEMLOCK',
    'ERR_VFIO_NOT_FOUND',
    'ERR_VFIO_OUT_OF_RANGE',
    'ERR_VFIO_PERMISSION',
    'ERR_VFIO_UNSUPPORTED',
  ])
})
