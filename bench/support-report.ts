/**
 * The report parts bench/pull.ts and bench/save.ts share: the per-tool summary table (median
 * time, MB/s, peak RSS, median CPU) and the "no slower than skopeo" verdict.
 */
import { MiB, median, pad, seconds } from './support.ts';

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
