/**
 * QEMU's QMP monitor, from inside the guest: guest/run.sh joins it to the serial port
 * `$VFIO_GUEST_QMP` (/dev/ttyS3), so a guest test can ask QEMU itself for things, e.g.
 * to remove the hot-pluggable edu (`$VFIO_GUEST_HOTPLUG_ID` at `$VFIO_GUEST_HOTPLUG_ADDR`):
 *
 *   using q = await Qmp.open()
 *   await q.qmp('device_del', { id: process.env.VFIO_GUEST_HOTPLUG_ID })
 *   await q.waitEvent('DEVICE_DELETED', (e) => e.data?.device === process.env.VFIO_GUEST_HOTPLUG_ID)
 *
 * QEMU's end of the link stays connected for the whole boot, so there is one monitor
 * session per boot: open one `Qmp` at a time. Bytes that arrive while no process has the
 * port open are partly lost; replies are matched by id and older lines are ignored.
 */
import fs from 'node:fs'
import tty from 'node:tty'

/** A QMP event, e.g. `{ event: 'DEVICE_DELETED', data: { device: 'hotedu', path } }`. */
export interface QmpEvent {
  event: string
  data?: Record<string, any>
  timestamp?: { seconds: number; microseconds: number }
}

/** A QMP error reply: `qmpClass` is its `class` (`GenericError`, `DeviceNotFound`, ...), `desc` its text. */
export class QmpError extends Error {
  constructor(
    readonly command: string,
    readonly qmpClass: string,
    readonly desc: string,
  ) {
    super(`QMP ${command}: ${qmpClass}: ${desc}`)
    this.name = 'QmpError'
  }
}

interface Pending {
  command: string
  resolve(value: unknown): void
  reject(err: Error): void
}
interface Waiter {
  match(e: QmpEvent): boolean
  resolve(e: QmpEvent): void
  reject(err: Error): void
}

/** Runs `start(resolve, reject)` and rejects after `ms` (calling `cancel`) unless it settled. */
function timed<T>(what: string, ms: number, cancel: () => void, start: (resolve: (v: T) => void, reject: (e: Error) => void) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => {
      cancel()
      reject(new Error(`QMP: timed out after ${ms} ms waiting for ${what}`))
    }, ms)
    const done = <A>(f: (a: A) => void) => (a: A) => {
      clearTimeout(timer)
      f(a)
    }
    try {
      start(done(resolve), done(reject))
    } catch (err) {
      done(reject)(err as Error)
    }
  })
}

/** A connection to QEMU's QMP monitor over the guest's serial port. */
export class Qmp {
  /** The QMP greeting, if this connection saw it (only the first after boot can; usually undefined). */
  greeting: unknown
  readonly #fd: number
  readonly #input: tty.ReadStream
  readonly #tag = `${process.pid}.${Date.now()}`
  readonly #pending = new Map<string, Pending>()
  readonly #waiters = new Set<Waiter>()
  #events: QmpEvent[] = []
  #seq = 0
  #line = ''
  #ready = false
  #closed: Error | undefined

  private constructor(fd: number) {
    this.#fd = fd
    this.#input = new tty.ReadStream(fd)
    this.#input.setRawMode(true) // no echo: QEMU would read its replies back as input
    this.#input.setEncoding('utf8')
    this.#input.on('data', (chunk: string) => this.#onData(chunk))
    this.#input.on('error', (err) => this.#fail(err))
    this.#input.unref() // only pending calls (their timers) keep the process alive
  }

  /**
   * Opens the monitor (default `$VFIO_GUEST_QMP`) and completes the handshake
   * (`qmp_capabilities`; "already complete" from an earlier connection is fine).
   * Events are collected from then on. Rejects after `timeoutMs`.
   */
  static async open(path = process.env.VFIO_GUEST_QMP ?? '/dev/ttyS3', timeoutMs = 10_000): Promise<Qmp> {
    const fd = fs.openSync(path, fs.constants.O_RDWR | fs.constants.O_NOCTTY)
    let q: Qmp
    try {
      q = new Qmp(fd)
    } catch (err) {
      fs.closeSync(fd) // not a tty
      throw err
    }
    try {
      // A control character resets QEMU's JSON parser, should an earlier process
      // have died mid-command (qmp-spec: "Forcing the JSON parser into known-good state").
      fs.writeSync(q.#fd, '\x1b\n')
      await q.qmp('qmp_capabilities', undefined, timeoutMs).catch((err) => {
        if (!(err instanceof QmpError && err.qmpClass === 'CommandNotFound')) throw err
      })
      return q
    } catch (err) {
      q.close()
      throw err
    }
  }

  /**
   * Runs a QMP command and resolves with its `return` value; rejects with a
   * {@link QmpError} (the reply's class and desc), or after `timeoutMs`.
   */
  qmp(command: string, args?: object, timeoutMs = 10_000): Promise<unknown> {
    const id = `${this.#tag}.${++this.#seq}`
    return timed<unknown>(`the reply to ${command}`, timeoutMs, () => this.#pending.delete(id), (resolve, reject) => {
      if (this.#closed) throw this.#closed
      fs.writeSync(this.#fd, JSON.stringify({ execute: command, arguments: args, id }) + '\n')
      this.#pending.set(id, { command, resolve, reject }) // the reply comes in a later 'data' event
    })
  }

  /**
   * Resolves with the first event called `name` (and accepted by `match`) that arrived
   * since `open()` and was not yet taken by another `waitEvent`, waiting up to `timeoutMs`.
   */
  waitEvent(name: string, match: (e: QmpEvent) => boolean = () => true, timeoutMs = 30_000): Promise<QmpEvent> {
    const want = (e: QmpEvent) => e.event === name && match(e)
    const waiter: Waiter = { match: want, resolve: () => {}, reject: () => {} }
    return timed<QmpEvent>(`event ${name}`, timeoutMs, () => this.#waiters.delete(waiter), (resolve, reject) => {
      const i = this.#events.findIndex(want)
      if (i >= 0) return resolve(this.#events.splice(i, 1)[0])
      if (this.#closed) throw this.#closed
      waiter.resolve = resolve
      waiter.reject = reject
      this.#waiters.add(waiter)
    })
  }

  /** Closes the port; pending calls reject. Closing twice is harmless. */
  close(): void {
    if (!this.#closed) this.#fail(new Error('QMP: connection closed'))
    this.#input.destroy() // closes the fd
  }

  /** `using` support: the same as `close()`. */
  [Symbol.dispose](): void {
    this.close()
  }

  #fail(err: Error): void {
    this.#closed ??= err
    for (const p of this.#pending.values()) p.reject(err)
    for (const w of this.#waiters) w.reject(err)
    this.#pending.clear()
    this.#waiters.clear()
  }

  #onData(chunk: string): void {
    const lines = (this.#line + chunk).split('\n')
    this.#line = lines.pop() ?? ''
    for (const line of lines) {
      let msg: any
      try {
        msg = JSON.parse(line)
      } catch {
        continue // the tail of a line cut when the port was opened
      }
      if (msg?.QMP) this.greeting = msg
      else if (typeof msg?.event === 'string') this.#onEvent(msg)
      else this.#onReply(msg)
    }
  }

  #onReply(msg: any): void {
    const p = this.#pending.get(msg?.id)
    if (p === undefined) return // another connection's reply, or one to a parse error
    this.#pending.delete(msg.id)
    this.#ready = true
    if (msg.error) p.reject(new QmpError(p.command, String(msg.error.class), String(msg.error.desc)))
    else p.resolve(msg.return)
  }

  #onEvent(e: QmpEvent): void {
    if (!this.#ready) return // from before our handshake: not ours to see
    for (const w of this.#waiters) {
      if (w.match(e)) {
        this.#waiters.delete(w)
        return w.resolve(e)
      }
    }
    this.#events.push(e)
    if (this.#events.length > 100) this.#events.shift()
  }
}
