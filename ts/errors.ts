/**
 * Typed errors. Every error this library throws has a stable `code`; errors from
 * the kernel also carry `errno`, `syscall` (the ioctl or system call) and `path`.
 */

/** The stable error codes, part of the public API. */
export const ErrorCode = {
  /** No `/dev/vfio/vfio` (load `vfio-pci`), no such device, a group with no node (bind it to vfio-pci). */
  NOT_FOUND: 'ERR_VFIO_NOT_FOUND',
  /** EACCES/EPERM: run as root or grant access to `/dev/vfio`. */
  PERMISSION: 'ERR_VFIO_PERMISSION',
  /** A device of the IOMMU group is bound to a host driver (named in the message). */
  GROUP_NOT_VIABLE: 'ERR_VFIO_GROUP_NOT_VIABLE',
  /** Held elsewhere: the group by another container or process, an IRQ index by a live `Interrupts`, a device this process holds. */
  BUSY: 'ERR_VFIO_BUSY',
  /** A wrongly typed or malformed argument, an unaligned access or DMA, a read-only region written. */
  INVALID_ARGUMENT: 'ERR_VFIO_INVALID_ARGUMENT',
  /** An index, offset + length, vector or value outside what exists; the IOMMU's limit of DMA mappings. */
  OUT_OF_RANGE: 'ERR_VFIO_OUT_OF_RANGE',
  /** A call after `close()`. */
  CLOSED: 'ERR_VFIO_CLOSED',
  /** `VFIO_IOMMU_MAP_DMA` failed with ENOMEM: raise `RLIMIT_MEMLOCK`. */
  MEMLOCK: 'ERR_VFIO_MEMLOCK',
  /** No VFIO on this platform or no binary; something the device or kernel does not offer. */
  UNSUPPORTED: 'ERR_VFIO_UNSUPPORTED',
  /** Any other system error (see `errno`). */
  IO: 'ERR_VFIO_IO',
  /** A wait's own `timeout` passed first (a register wait: the message has the last value read). */
  TIMEOUT: 'ERR_VFIO_TIMEOUT',
  /** A wait was aborted through its `AbortSignal`. */
  ABORTED: 'ERR_VFIO_ABORTED',
} as const

/** One of the {@link ErrorCode} values. */
export type ErrorCodeValue = (typeof ErrorCode)[keyof typeof ErrorCode]

/**
 * The optional fields of a {@link VfioError}.
 * @inline
 */
interface ErrorFields {
  errno?: number
  syscall?: string
  path?: string
  cause?: unknown
}

/** An error from vfio-ioctls: a kernel failure, bad input or a closed handle. */
export class VfioError extends Error {
  /** Stable code, e.g. `ERR_VFIO_NOT_FOUND`. */
  readonly code: ErrorCodeValue
  /** The kernel's errno, when the kernel refused. */
  readonly errno?: number
  /** The ioctl or system call (or the library operation) that failed. */
  readonly syscall?: string
  /** The path involved, when there is one. */
  readonly path?: string

  /**
   * Made by the native layer for every error it reports (see `src/error.rs`), and by
   * the facade for its own checks. The stack starts at the library call that failed.
   */
  constructor(code: ErrorCodeValue, message: string, fields: ErrorFields = {}) {
    super(message, fields.cause === undefined ? undefined : { cause: fields.cause })
    Error.captureStackTrace?.(this, new.target)
    this.name = 'VfioError'
    this.code = code
    if (fields.errno !== undefined) this.errno = fields.errno
    if (fields.syscall !== undefined) this.syscall = fields.syscall
    if (fields.path !== undefined) this.path = fields.path
  }
}

/** A wrongly typed argument. Also carries `code` = `ERR_VFIO_INVALID_ARGUMENT`. */
export class VfioTypeError extends TypeError {
  /** Always `ERR_VFIO_INVALID_ARGUMENT`. */
  readonly code = ErrorCode.INVALID_ARGUMENT
  constructor(message: string) {
    super(message)
    this.name = 'VfioTypeError'
  }
}

/**
 * A wait ended by its `AbortSignal`, after Node's convention (`name` is `'AbortError'`,
 * `cause` is the signal's `reason`, e.g. a `TimeoutError` from `AbortSignal.timeout()`),
 * with `code` `ERR_VFIO_ABORTED`.
 */
export class VfioAbortError extends VfioError {
  constructor(message: string, signal: AbortSignal) {
    super(ErrorCode.ABORTED, message, { cause: signal.reason })
    this.name = 'AbortError'
  }
}
