/**
 * The report parts the registry benchmarks share: the image line, a run's RSS and CPU, the
 * per-tool summary table (median time, MB/s, peak RSS, median CPU) and the "no slower than
 * skopeo" verdict.
 */
import { type BenchImage, MiB, median, pad, seconds } from './support.ts';
import { BENCH_REPOSITORY, BENCH_TAG } from './support-runs.ts';

export interface MeasuredRun {
  ms: number;
  rssBytes?: number;
  cpuSeconds?: number;
}

export interface SummaryTable<T> {
  /** Header, dashes, one row per tool. */
  lines: string[];
  medians: Map<T, number>;
  /** Highest measured peak RSS per tool (undefined where none was measured). */
  peaks: Map<T, number | undefined>;
}

/** MB/s is `bytes` (10^6 per MB) over the median time. */
export function summaryTable<T extends string>(
  results: Map<T, MeasuredRun[]>,
  toolWidth: number,
  bytes: number,
): SummaryTable<T> {
  const header = `${pad('tool', toolWidth)} ${pad('runs', 5, true)} ${pad('median s', 9, true)} ${pad('MB/s', 8, true)} ${pad('peak RSS MiB', 13, true)} ${pad('median CPU s', 13, true)}`;
  const lines = [header, '-'.repeat(header.length)];
  const medians = new Map<T, number>();
  const peaks = new Map<T, number | undefined>();
  for (const [tool, runs] of results) {
    const m = median(runs.map((r) => r.ms));
    medians.set(tool, m);
    const rss = runs.map((r) => r.rssBytes).filter((v): v is number => v !== undefined);
    const peak = rss.length ? Math.max(...rss) : undefined;
    peaks.set(tool, peak);
    const cpu = runs.map((r) => r.cpuSeconds).filter((v): v is number => v !== undefined);
    lines.push(
      `${pad(tool, toolWidth)} ${pad(String(runs.length), 5, true)} ${pad(seconds(m), 9, true)} ` +
        `${pad((bytes / 1e6 / (m / 1000)).toFixed(1), 8, true)} ` +
        `${pad(peak === undefined ? 'n/a' : (peak / MiB).toFixed(1), 13, true)} ` +
        `${pad(cpu.length ? median(cpu).toFixed(2) : 'n/a', 13, true)}`,
    );
  }
  return { lines, medians, peaks };
}

/** The ratio line and PASS/FAIL (or SKIP when a median is missing). */
export function speedVerdict(imageCacheMs?: number, skopeoMs?: number): string[] {
  if (imageCacheMs === undefined || skopeoMs === undefined) {
    return ['SKIP: image-cache no slower than skopeo (needs both tools)'];
  }
  const ratio = imageCacheMs / skopeoMs;
  return [
    `ratio image-cache/skopeo (median time): ${ratio.toFixed(2)}`,
    `${ratio <= 1 ? 'PASS' : 'FAIL'}: image-cache no slower than skopeo ` +
      `(${seconds(imageCacheMs)} s vs ${seconds(skopeoMs)} s)`,
  ];
}

/** What copying the image moves: its manifest and every blob, compressed as stored. */
export function imageBytes(image: BenchImage): number {
  return image.blobs.reduce((sum, b) => sum + b.size, 0) + image.manifest.bytes.length;
}

/** The line naming the image: its layers, the bytes of its files and what a copy moves. */
export function imageLine(
  image: BenchImage,
  gzipLevel: number,
  moved: 'to transfer' | 'compressed',
): string {
  const bytes = imageBytes(image);
  return (
    `image: docker.io/${BENCH_REPOSITORY}:${BENCH_TAG}, ${image.layers.length} gzip layers (level ${gzipLevel}), ` +
    `${(image.fileBytes / MiB).toFixed(0)} MiB of files, ${(bytes / MiB).toFixed(1)} MiB ${moved}`
  );
}

/** `rss 12.3 MiB  cpu 0.42 s` of one run, `n/a` for what was not measured. */
export function rssAndCpu(run: MeasuredRun): string {
  const rss = run.rssBytes === undefined ? 'n/a' : `${(run.rssBytes / MiB).toFixed(1)} MiB`;
  const cpu = run.cpuSeconds === undefined ? 'n/a' : `${run.cpuSeconds.toFixed(2)} s`;
  return `rss ${rss}  cpu ${cpu}`;
}
