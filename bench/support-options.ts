/**
 * The flags of the benchmarks that copy the generated image (as bench/pull.ts and bench/save.ts
 * spell them): its size, layer count, seed and gzip level, runs per case, and the time one copy
 * may take. Spread IMAGE_BENCH_FLAGS into parseArgs' options, then read them with
 * imageBenchOptions.
 */
import type { BenchImageOptions } from './support.ts';
import { positiveInt } from './support.ts';

export const IMAGE_BENCH_FLAGS = {
  'size-mib': { type: 'string', default: '1024' },
  layers: { type: 'string', default: '8' },
  runs: { type: 'string', default: '3' },
  seed: { type: 'string', default: 'bench' },
  'gzip-level': { type: 'string', default: '1' },
  'timeout-s': { type: 'string' },
} as const;

export interface ImageBenchOptions extends BenchImageOptions {
  runs: number;
  /** --timeout-s, by default 60 s + 0.5 s per MiB. */
  timeoutMs: number;
}

/** `scale` multiplies the size and the layer count (a case ten times larger: 10). */
export function imageBenchOptions(
  values: {
    'size-mib': string;
    layers: string;
    runs: string;
    seed: string;
    'gzip-level': string;
    'timeout-s'?: string;
  },
  scale = 1,
): ImageBenchOptions {
  const gzipLevel = Number(values['gzip-level']);
  if (!Number.isInteger(gzipLevel) || gzipLevel < 0 || gzipLevel > 9) {
    throw new Error('--gzip-level must be 0..9');
  }
  const sizeMiB = positiveInt(values['size-mib'], '--size-mib') * scale;
  const timeoutS =
    values['timeout-s'] === undefined
      ? 60 + Math.ceil(sizeMiB / 2)
      : positiveInt(values['timeout-s'], '--timeout-s');
  return {
    sizeMiB,
    layers: positiveInt(values.layers, '--layers') * scale,
    runs: positiveInt(values.runs, '--runs'),
    seed: values.seed,
    gzipLevel,
    timeoutMs: timeoutS * 1000,
  };
}
