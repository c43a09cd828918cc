/**
 * The flags of the benchmarks that copy a generated image (bench/pull.ts, save.ts, mirror.ts,
 * load.ts): its size, layer count and seed, runs per case, the gzip level and the time one copy
 * may take, and the list of tools to compare. Spread the flags into node's parseArgs options,
 * then read them with the matching function.
 */
import type { BenchImageOptions } from './support.ts';
import { positiveInt } from './support.ts';

/** What decides the image and how often it is copied. */
export const IMAGE_SIZE_FLAGS = {
  'size-mib': { type: 'string', default: '1024' },
  layers: { type: 'string', default: '8' },
  runs: { type: 'string', default: '3' },
  seed: { type: 'string', default: 'bench' },
} as const;

export const IMAGE_BENCH_FLAGS = {
  ...IMAGE_SIZE_FLAGS,
  'gzip-level': { type: 'string', default: '1' },
  'timeout-s': { type: 'string' },
} as const;

export interface ImageSizeOptions {
  sizeMiB: number;
  layers: number;
  runs: number;
  seed: string;
}

export interface ImageBenchOptions extends BenchImageOptions, ImageSizeOptions {
  /** --timeout-s, by default 60 s + 0.5 s per MiB. */
  timeoutMs: number;
}

/** `scale` multiplies the size and the layer count (a case ten times larger: 10). */
export function imageSizeOptions(
  values: { 'size-mib': string; layers: string; runs: string; seed: string },
  scale = 1,
): ImageSizeOptions {
  return {
    sizeMiB: positiveInt(values['size-mib'], '--size-mib') * scale,
    layers: positiveInt(values.layers, '--layers') * scale,
    runs: positiveInt(values.runs, '--runs'),
    seed: values.seed,
  };
}

export function imageBenchOptions(
  values: Parameters<typeof imageSizeOptions>[0] & { 'gzip-level': string; 'timeout-s'?: string },
  scale = 1,
): ImageBenchOptions {
  const gzipLevel = Number(values['gzip-level']);
  if (!Number.isInteger(gzipLevel) || gzipLevel < 0 || gzipLevel > 9) {
    throw new Error('--gzip-level must be 0..9');
  }
  const size = imageSizeOptions(values, scale);
  const timeoutS =
    values['timeout-s'] === undefined
      ? 60 + Math.ceil(size.sizeMiB / 2)
      : positiveInt(values['timeout-s'], '--timeout-s');
  return { ...size, gzipLevel, timeoutMs: timeoutS * 1000 };
}

/** `--tools a,b`: each one of `known`, in the order given. */
export function toolList<T extends string>(text: string, known: readonly T[]): T[] {
  const tools = text.split(',').map((tool) => tool.trim());
  for (const tool of tools) {
    if (!known.includes(tool as T)) throw new Error(`unknown tool: ${tool}`);
  }
  return tools as T[];
}
