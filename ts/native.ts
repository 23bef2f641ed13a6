/**
 * Loads the native binding lazily, so that importing the package works anywhere
 * and the first use on a platform without it throws `ERR_VFIO_UNSUPPORTED`.
 */
import type * as Binding from '../native/binding'
import { ErrorCode, VfioError } from './errors'

export type NativeBinding = typeof Binding

let binding: NativeBinding | undefined
let loadError: unknown

/** The binding, loaded on first call. */
export function native(): NativeBinding {
  if (binding) return binding
  if (process.platform !== 'linux') {
    throw new VfioError(
      ErrorCode.UNSUPPORTED,
      `VFIO is Linux-only; this is ${process.platform}. The package imports here, but no call can work.`,
    )
  }
  if (loadError === undefined) {
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const loaded = require('../native/binding.cjs') as NativeBinding
      // Native errors are made as VfioError instances, with code, errno, syscall, path.
      loaded.useErrorClass(VfioError as new (code: string, message: string, fields: object) => Error)
      binding = loaded
      return binding
    } catch (err) {
      loadError = err
    }
  }
  throw new VfioError(
    ErrorCode.UNSUPPORTED,
    `no vfio-ioctls binary for ${process.platform}-${process.arch}: ${(loadError as Error)?.message ?? loadError}. ` +
      'Reinstall without --no-optional, or build from source with `npm run build`.',
    { cause: loadError },
  )
}

/** Whether DMA buffers may expose zero-copy views (false in Electron, or when disabled). */
export function externalBuffersAllowed(): boolean {
  const env = process.env.VFIO_IOCTLS_NO_EXTERNAL_BUFFERS
  if (env !== undefined && env !== '' && env !== '0') return false
  return !(process.versions as Record<string, string | undefined>).electron
}
