/**
 * Records which public members of the facade a suite calls, so the guest suite can
 * prove it exercised every one against the real kernel.
 */
import * as api from '../../ts/index'

const classes: Record<string, { prototype: object }> = {
  Container: api.Container,
  Device: api.Device,
  Region: api.Region,
  MappedRegion: api.MappedRegion,
  DmaBuffer: api.DmaBuffer,
  DmaSlice: api.DmaSlice,
  DmaPool: api.DmaPool,
  Interrupts: api.Interrupts,
  InterruptWaiter: api.InterruptWaiter,
}
const namespaces: Record<string, Record<string, unknown>> = {
  sysfs: api.sysfs as unknown as Record<string, unknown>,
  barrier: api.barrier as unknown as Record<string, unknown>,
  '': api as unknown as Record<string, unknown>,
}
/** Runtime members that are not public API (TypeScript `protected` or inherited plumbing). */
const internal = new Set(['constructor', 'native', 'onClose'])
const stopAt = new Set<object>([Object.prototype, Function.prototype, require('node:events').EventEmitter.prototype])

const covered = new Set<string>()
const expected = new Set<string>()

function label(key: string | symbol): string {
  return typeof key === 'symbol' ? `[${key.description}]` : key
}

/** Wraps every public method and getter; call once before the tests. */
export function instrument(): void {
  expected.add('new Container')
  for (const [cls, ctor] of Object.entries(classes)) {
    for (let proto: object | null = ctor.prototype; proto && !stopAt.has(proto); proto = Object.getPrototypeOf(proto)) {
      for (const key of Reflect.ownKeys(proto)) {
        if (typeof key === 'string' && internal.has(key)) continue
        const name = `${cls}.${label(key)}`
        const d = Object.getOwnPropertyDescriptor(proto, key)
        if (!d || expected.has(name)) continue
        expected.add(name)
        if (typeof d.value === 'function') {
          const original = d.value as (...a: unknown[]) => unknown
          Object.defineProperty(proto, key, {
            ...d,
            value: function (this: unknown, ...args: unknown[]) {
              if (this instanceof (ctor as unknown as new () => unknown)) covered.add(`${cls}.${label(key)}`)
              return original.apply(this, args)
            },
          })
        } else if (d.get) {
          const get = d.get
          Object.defineProperty(proto, key, {
            ...d,
            get: function (this: unknown) {
              if (this instanceof (ctor as unknown as new () => unknown)) covered.add(`${cls}.${label(key)}`)
              return get.call(this)
            },
          })
        }
      }
    }
  }
  for (const [ns, obj] of Object.entries(namespaces)) {
    for (const [key, value] of Object.entries(obj)) {
      if (typeof value !== 'function' || key in classes || key.endsWith('Error')) continue
      expected.add(ns ? `${ns}.${key}` : key)
    }
  }
}

function wrapFunction<F extends (...a: never[]) => unknown>(name: string, fn: F): F {
  return ((...args: never[]) => {
    covered.add(name)
    return fn(...args)
  }) as F
}

/**
 * The module-level API with every call recorded: namespace exports cannot be
 * patched, so the suite calls them through this object.
 */
function wrapNamespace<T extends object>(ns: string, obj: T): T {
  return Object.fromEntries(Object.entries(obj).map(([k, v]) => [k, wrapFunction(`${ns}.${k}`, v as (...a: never[]) => unknown)])) as T
}

export function tracked() {
  const sysfs = wrapNamespace('sysfs', api.sysfs)
  const barrier = wrapNamespace('barrier', api.barrier)
  class Container extends api.Container {
    constructor(options?: api.ContainerOptions) {
      super(options)
      covered.add('new Container')
    }
  }
  return {
    sysfs,
    barrier,
    Container,
    features: wrapFunction('features', api.features),
    pageSize: wrapFunction('pageSize', api.pageSize),
  }
}

/** Members never called, sorted. */
export function missing(): string[] {
  return [...expected].filter((m) => !covered.has(m)).sort()
}

/** Members called, sorted. */
export function coveredList(): string[] {
  return [...covered].filter((m) => expected.has(m)).sort()
}
