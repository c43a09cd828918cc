/**
 * What `GET /cache/stats` costs as the history grows: over 3 days (72 hours) and over 30 days
 * (720 hours) of hourly figures, on both backends, through the Engine API router.
 *
 *   npm run bench:stats
 *   npm run bench:stats -- --runs 50
 *
 * Each backend is composed in process (lib/composition.ts: composeEmbedded on a temp folder,
 * composeAws on DynamoDB Local and fauxqs), its history filled with 30 days of hours (every
 * counter of lib/metrics/names.ts and the storage gauges in each, as a busy cache leaves them),
 * then the window is asked for `--runs` times. Printed: the median and worst time per request,
 * the answer's size, and on DynamoDB the requests and read units each answer cost (no Scan: one
 * Query per window). The ten-times case of a week against ~10 weeks cannot exist with 35 days
 * of retention, so 3 days stands against 30. Times are the emulator's and this machine's.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { DynamoCatalog } from '../lib/adapters/dynamo-catalog.ts';
import { type Composition, composeEmbedded } from '../lib/composition.ts';
import { parseServeArgs } from '../lib/config.ts';
import { createRouter } from '../lib/engine/router.ts';
import { COUNTER_NAMES } from '../lib/metrics/names.ts';
import { HOUR_MS, hourOf } from '../lib/ports/stats-log.ts';
import { composeOnEmulators, stopAwsEmulators } from '../test/support/aws-emulators.ts';
import { bodyBytes } from '../test/support/aws-save-backend.ts';
import { log, median, positiveInt, runMain } from './support.ts';

const WINDOWS = [
  ['3 days', '72h'],
  ['30 days', '720h'],
] as const;

async function fillHistory(composition: Composition, now: number): Promise<void> {
  const { stats } = composition.context;
  const first = hourOf(now) - 30 * 24 * HOUR_MS;
  for (let hour = first; hour <= now; hour += HOUR_MS) {
    const counters = Object.fromEntries(
      COUNTER_NAMES.map((name, i) => [name, ((hour / HOUR_MS) % 97) * (i + 1) * 1_000]),
    );
    const gauges = { storedBytes: 40e9 + hour / 1000, storedBlobs: 12_000, images: 900 };
    await stats.addHour(hour, counters, gauges);
  }
}

async function measure(
  name: string,
  composition: Composition,
  runs: number,
  catalog?: DynamoCatalog,
): Promise<string[]> {
  const router = createRouter(composition.context);
  const lines: string[] = [];
  for (const [label, since] of WINDOWS) {
    const times: number[] = [];
    let bytes = 0;
    let hours = 0;
    catalog?.requests.reset();
    for (let i = 0; i < runs; i++) {
      const started = performance.now();
      const response = await router({
        method: 'GET',
        path: '/cache/stats',
        query: new URLSearchParams({ since }),
        headers: {},
      });
      const body = await bodyBytes(response);
      times.push(performance.now() - started);
      if (response.status !== 200) throw new Error(`${name} ${since}: ${body.toString()}`);
      bytes = body.length;
      hours = (JSON.parse(body.toString()) as { hours: unknown[] }).hours.length;
    }
    const requests = catalog
      ? `  ${perRun(catalog.requests.byOperation(), runs)}, ${(catalog.requests.capacity / runs).toFixed(1)} RCU`
      : '';
    lines.push(
      `${name.padEnd(9)} ${label.padEnd(8)} ${String(hours).padStart(4)} hours  median ${median(times).toFixed(1).padStart(6)} ms  max ${Math.max(
        ...times,
      )
        .toFixed(1)
        .padStart(6)} ms  ${(bytes / 1024).toFixed(0).padStart(4)} KiB${requests}`,
    );
  }
  return lines;
}

function perRun(operations: Record<string, number>, runs: number): string {
  return Object.entries(operations)
    .map(([op, n]) => `${op} ${n / runs}`)
    .join(', ');
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    options: { runs: { type: 'string', default: '20' } },
    strict: true,
  });
  const runs = positiveInt(values.runs, '--runs');
  const now = Date.now();
  const lines: string[] = [];

  const dir = await mkdtemp(join(tmpdir(), 'image-cache-bench-stats-'));
  const embedded = composeEmbedded(parseServeArgs(['--data', dir], { IMAGE_CACHE_REGISTRIES: '' }));
  try {
    log('embedded: filling 30 days of hours');
    await fillHistory(embedded, now);
    lines.push(...(await measure('embedded', embedded, runs)));
  } finally {
    await embedded.close();
    await rm(dir, { recursive: true, force: true });
  }

  const { composition: aws } = await composeOnEmulators();
  try {
    log('aws (DynamoDB Local): filling 30 days of hours');
    await fillHistory(aws, now);
    const catalog = aws.context.catalog as DynamoCatalog;
    catalog.requests.measureCapacity();
    lines.push(...(await measure('aws', aws, runs, catalog)));
  } finally {
    await aws.close();
    await stopAwsEmulators();
  }
  process.stdout.write(`GET /cache/stats, ${runs} runs per window\n${lines.join('\n')}\n`);
}

runMain('bench:stats', main);
