/**
 * Backend selection: which device a model runs on, checked against what the native addon was
 * compiled for, and how many CPU threads it may use.
 */
import { TallowError } from './errors'
import { invalidOption } from './options'
import { callNative, native, type NativeLoadOptions } from './native'

/**
 * Where a model runs.
 *
 * - `'auto'` (the default): the best device this build has, in the order `cuda`, `metal`, `cpu`.
 * - `'cpu'`: always available.
 * - `'cuda'`, `'metal'`: only in builds compiled with that backend; asking for one that is not
 *   there fails with `UNSUPPORTED_DEVICE`.
 */
export type Device = 'auto' | 'cpu' | 'cuda' | 'metal'

/** How {@link loadModel} places a model. */
export interface BackendOptions {
  /** Where the model runs. Default `'auto'`. See {@link Device}. */
  device?: Device
  /**
   * How many CPU threads the engine may use for compute: a positive integer. Default: chosen by
   * the engine (the number of cores).
   */
  threads?: number
}

const DEVICES: readonly Device[] = ['auto', 'cpu', 'cuda', 'metal']
// What 'auto' picks, best first.
const PREFERENCE: readonly string[] = ['cuda', 'metal', 'cpu']
// The largest value a native u32 holds.
const MAX_U32 = 0xffff_ffff

/** The devices this build of the native addon can run on, e.g. `['cpu']` or `['cpu', 'cuda']`. */
export function availableDevices(): string[] {
  return callNative(() => native().availableDevices())
}

/**
 * Validates backend options and resolves `'auto'` to a concrete device.
 *
 * @throws TallowError UNSUPPORTED_DEVICE for a device this build lacks; INVALID_OPTIONS for a
 *   malformed `threads`.
 * @internal
 */
export function resolveBackend(options: BackendOptions): NativeLoadOptions {
  const { device = 'auto', threads } = options
  if (typeof device !== 'string' || !DEVICES.includes(device)) {
    throw new TallowError(
      'UNSUPPORTED_DEVICE',
      `unknown device ${JSON.stringify(device)}: expected one of ${DEVICES.join(', ')}`,
    )
  }
  const available = availableDevices()
  let resolved: string
  if (device === 'auto') {
    resolved = PREFERENCE.find((d) => available.includes(d)) ?? available[0] ?? 'cpu'
  } else if (available.includes(device)) {
    resolved = device
  } else {
    throw new TallowError(
      'UNSUPPORTED_DEVICE',
      `device '${device}' is not available in this build of tallow; available: ${available.join(', ')}`,
    )
  }
  if (threads === undefined) return { device: resolved }
  if (typeof threads !== 'number' || !Number.isInteger(threads) || threads < 1 || threads > MAX_U32) {
    throw invalidOption('threads', `an integer in [1, ${MAX_U32}]`, threads)
  }
  return { device: resolved, threads }
}
