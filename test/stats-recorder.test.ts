import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SqliteCatalog } from '../lib/adapters/sqlite-catalog.ts';
import { sha256 } from '../lib/digest.ts';
import type { CounterTotals } from '../lib/metrics/names.ts';
import { StatsRecorder, zeroTotals } from '../lib/metrics/stats-recorder.ts';
import { HOUR_MS } from '../lib/ports/stats-log.ts';

const H0 = Date.UTC(2026, 11, 6, 10);

describe('StatsRecorder over the SQLite catalog', () => {
  let dir: string;
  let catalog: SqliteCatalog;
  let totals: CounterTotals;
  let now: number;
  let recorder: StatsRecorder;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'image-cache-recorder-'));
    catalog = new SqliteCatalog(join(dir, 'catalog.db'));
    totals = zeroTotals();
    now = H0 + 5 * 60_000;
    recorder = new StatsRecorder({ totals: () => totals, log: catalog, clock: { now: () => now } });
  });

  afterEach(async () => {
    catalog.close();
    await rm(dir, { recursive: true, force: true });
  });

  /** Another connection breaks and mends the table, as a real fault would. */
  function withTableGone<T>(run: () => Promise<T>): Promise<T> {
    const other = new Database(join(dir, 'catalog.db'));
    other.exec('ALTER TABLE stats_hours RENAME TO stats_hours_away');
    return run().finally(() => {
      other.exec('ALTER TABLE stats_hours_away RENAME TO stats_hours');
      other.close();
    });
  }

  it('writes what the counters grew by since the last flush, and nothing when they did not', async () => {
    totals.requests = 3;
    totals.bytesServed = 1000;
    expect(await recorder.flush()).toBe(1);
    totals.requests = 5;
    expect(await recorder.flush()).toBe(1);
    expect(await recorder.flush()).toBe(0);
    expect(await catalog.listHours(0)).toEqual([
      { hour: H0, counters: { requests: 5, bytesServed: 1000 }, gauges: {} },
    ]);
  });

  it("writes the live storage gauges with the current hour's counts, never on their own", async () => {
    let reads = 0;
    const gauged = new StatsRecorder({
      totals: () => totals,
      log: catalog,
      clock: { now: () => now },
      gauges: async () => {
        reads++;
        return { ...(await catalog.storageFigures()) };
      },
    });
    await catalog.addBlob({ digest: sha256('stored'), size: 1234 }, now);
    expect(await gauged.flush()).toBe(0);
    expect(reads).toBe(0);
    totals.requests = 1;
    expect(await gauged.flush()).toBe(1);
    expect(await catalog.listHours(0)).toEqual([
      {
        hour: H0,
        counters: { requests: 1 },
        gauges: { storedBytes: 1234, storedBlobs: 1, images: 0 },
      },
    ]);
  });

  it('books counts before the first flush too (the baseline is zero)', async () => {
    totals.pulls = 2;
    now = H0 + HOUR_MS + 1;
    await recorder.flush();
    expect((await catalog.listHours(0)).map((h) => [h.hour, h.counters])).toEqual([
      [H0 + HOUR_MS, { pulls: 2 }],
    ]);
  });

  it('books each delta to the hour of the flush that saw it, across a boundary', async () => {
    totals.manifestHits = 4;
    now = H0 + HOUR_MS - 1;
    await recorder.flush();
    totals.manifestHits = 7;
    now = H0 + HOUR_MS;
    await recorder.flush();
    totals.manifestHits = 8;
    now = H0 + 3 * HOUR_MS + 10;
    await recorder.flush();
    expect((await catalog.listHours(0)).map((h) => [h.hour, h.counters.manifestHits])).toEqual([
      [H0, 4],
      [H0 + HOUR_MS, 3],
      [H0 + 3 * HOUR_MS, 1],
    ]);
  });

  it('keeps a delta whose write failed and writes it once with the next flush', async () => {
    totals.blobMisses = 2;
    await recorder.flush();
    totals.blobMisses = 5;
    await expect(withTableGone(() => recorder.flush())).rejects.toThrow(/stats_hours/);
    expect(recorder.unwrittenHours).toBe(1);
    totals.blobMisses = 6;
    expect(await recorder.flush()).toBe(1);
    expect(recorder.unwrittenHours).toBe(0);
    expect(await recorder.flush()).toBe(0);
    expect((await catalog.listHours(0))[0]?.counters).toEqual({ blobMisses: 6 });
  });

  it('keeps deltas of several hours apart while writes fail, and writes each to its hour', async () => {
    totals.upstreamThrottled = 1;
    await expect(withTableGone(() => recorder.flush())).rejects.toThrow();
    now = H0 + HOUR_MS + 5;
    totals.upstreamThrottled = 3;
    await expect(withTableGone(() => recorder.flush())).rejects.toThrow();
    expect(recorder.unwrittenHours).toBe(2);
    expect(await recorder.flush()).toBe(2);
    expect((await catalog.listHours(0)).map((h) => h.counters.upstreamThrottled)).toEqual([1, 2]);
  });

  it('runs concurrent flushes one after the other without counting twice', async () => {
    totals.joins = 10;
    const flushes = await Promise.all([recorder.flush(), recorder.flush(), recorder.flush()]);
    expect(flushes).toEqual([1, 0, 0]);
    expect((await catalog.listHours(0))[0]?.counters).toEqual({ joins: 10 });
  });
});
