import test from 'ava'
import { Container, ErrorCode, VfioError, VfioTypeError } from '../ts/index'
import { execFileSync } from 'node:child_process'
import path from 'node:path'
import { native } from '../ts/native'

test('native errors are VfioErrors with code, errno, syscall and path, and a stack from the public call', (t) => {
  const err = t.throws(() => new Container({ path: '/nonexistent/vfio' })) as VfioError
  t.true(err instanceof VfioError)
  t.is(err.code, ErrorCode.NOT_FOUND)
  t.is(err.errno, 2)
  t.is(err.syscall, 'open')
  t.is(err.path, '/nonexistent/vfio')
  t.is(err.cause, undefined, 'no transport error hangs off it')
  t.false(err.message.includes('\u001f'), 'no encoded record in the message')
  const first = err.stack?.split('\n')[1] ?? ''
  t.regex(first, /new Container/, `first frame: ${first}`)
})

test('raw-binding users get the same properties on plain Errors', (t) => {
  const program = `
    const b = require(${JSON.stringify(path.join(__dirname, '..', 'native', 'binding.cjs'))})
    try { new b.Container({ path: '/nonexistent/vfio' }) } catch (e) {
      console.log(JSON.stringify({ error: e instanceof Error, code: e.code, errno: e.errno, syscall: e.syscall, path: e.path }))
    }`
  const out = JSON.parse(execFileSync(process.execPath, ['-e', program], { encoding: 'utf8' }))
  t.deepEqual(out, { error: true, code: 'ERR_VFIO_NOT_FOUND', errno: 2, syscall: 'open', path: '/nonexistent/vfio' })
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
    'ERR_VFIO_TIMEOUT',
    'ERR_VFIO_UNSUPPORTED',
  ])
})

test('the facade knows every code the native layer reports, and only adds its own ABORTED', (t) => {
  const nativeCodes = [...native().errorCodes()].sort()
  const facade = Object.values(ErrorCode).filter((c) => c !== ErrorCode.ABORTED).sort()
  t.deepEqual(facade, nativeCodes)
})
