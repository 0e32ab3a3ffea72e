/**
 * Quantized models: the types a safetensors checkpoint can be quantized to at load
 * (`loadModel(dir, { quantize })`), and how quantized models are placed.
 */
import { invalidOption } from './options'

/**
 * A ggml quantization type, named as llama.cpp's `llama-quantize` names them (lower case).
 * `q8_0` keeps quality nearly intact at half the size of f16; `q4_k` is the usual 4-bit choice.
 * K-quants (`q2_k` … `q6_k`) need rows of 256 values; matrices whose rows are not fall back as
 * llama.cpp does (`q4_k` → `q5_0`, `q6_k` → `q8_0`, …).
 */
export type QuantizeType =
  | 'f16'
  | 'bf16'
  | 'q8_0'
  | 'q4_0'
  | 'q4_1'
  | 'q5_0'
  | 'q5_1'
  | 'q2_k'
  | 'q3_k'
  | 'q4_k'
  | 'q5_k'
  | 'q6_k'

/** Options of {@link loadModel} about quantization. */
export interface QuantizationOptions {
  /**
   * Quantize a safetensors checkpoint's weight matrices to this type while loading (norms and
   * MoE routers stay in f32, as llama.cpp keeps them). Quantized weights run on the CPU. Not
   * allowed for GGUF files, which are already quantized (`INVALID_OPTIONS`). Default: none.
   */
  quantize?: QuantizeType
}

/**
 * Whether the model at `path` runs with quantized weights on the CPU: a GGUF file (by its
 * extension; the engine checks the magic bytes) or a quantize option.
 *
 * @internal
 */
export function runsQuantized(path: string, options: QuantizationOptions): boolean {
  return options.quantize !== undefined || path.toLowerCase().endsWith('.gguf')
}

/**
 * The `quantize` option as the binding takes it; the engine checks the name.
 *
 * @throws TallowError INVALID_OPTIONS for a value that is not a string
 * @internal
 */
export function quantizeOption(value: unknown): string | undefined {
  if (value === undefined) return undefined
  if (typeof value !== 'string') throw invalidOption('quantize', 'a quantization type name', value)
  return value
}
