import { register } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { CacheMetrics, SERIES } from '../lib/metrics/cache-metrics.ts';
import { COUNTER_NAMES, type CounterName } from '../lib/metrics/names.ts';
import type { GcReport } from '../lib/ports/gc-report-log.ts';
import { parsePrometheusText } from './support/prometheus-text.ts';

/**
 * The one mapping from the call sites' methods to COUNTER_NAMES (what the history, the EMF
 * line and the dashboard read): each case calls one method and says which totals move by how
 * much; every other total must stay 0, so a method counted under a wrong name fails.
 */

function gcReport(overrides: Partial<GcReport>): GcReport {
  const none = { blobs: 0, bytes: 0 };
  return {
    id: 'r',
    trigger: 'manual',
    dryRun: false,
    graceMs: 0,
    startedAt: 0,
    durationMs: 1,
    examined: none,
    kept: none,
    deleted: { blobs: 2, bytes: 4096 },
    orphans: none,
    errors: [],
    ...overrides,
  };
}

const CASES: [string, (m: CacheMetrics) => void, Partial<Record<CounterName, number>>][] = [
  ['a 200', (m) => m.request('pull', 200), { requests: 1 }],
  ['a 503', (m) => m.request('registry', 503), { requests: 1, requestErrors: 1 }],
  ['a 404 is no error', (m) => m.request('images', 404), { requests: 1 }],
  ['manifest hit', (m) => m.lookup('manifest', true, 'docker.io', 'engine'), { manifestHits: 1 }],
  [
    'manifest misses',
    (m) => m.lookup('manifest', false, 'ghcr.io', 'registry', 2),
    { manifestMisses: 2 },
  ],
  ['blob hits', (m) => m.lookup('blob', true, 'docker.io', 'registry', 3), { blobHits: 3 }],
  ['no lookup', (m) => m.lookup('blob', false, 'docker.io', 'engine', 0), {}],
  ['blob miss', (m) => m.lookup('blob', false, 'docker.io', 'engine'), { blobMisses: 1 }],
  ['bytes served', (m) => m.bytesServed('engine', 1234), { bytesServed: 1234 }],
  ['bytes fetched', (m) => m.bytesFetched('docker.io', 99), { bytesFetched: 99 }],
  ['upstream ok', (m) => m.upstreamRequest('ghcr.io', 'ok', false), { upstreamRequests: 1 }],
  [
    'upstream error',
    (m) => m.upstreamRequest('ghcr.io', 'error', false),
    { upstreamRequests: 1, upstreamErrors: 1 },
  ],
  [
    'a Docker Hub manifest GET answered 429',
    (m) => m.upstreamRequest('docker.io', 'throttled', true),
    { upstreamRequests: 1, upstreamThrottled: 1, hubManifestGets: 1 },
  ],
  ['a join', (m) => m.joined('blob'), { joins: 1 }],
  ['a pull', (m) => m.duration('pull', 1.5), { pulls: 1 }],
  ['a save', (m) => m.duration('save', 0.2), { saves: 1 }],
  ['a load', (m) => m.duration('load', 3), { loads: 1 }],
  ['a collection', (m) => m.collected(gcReport({})), { gcRuns: 1, bytesReclaimed: 4096 }],
  ['a dry run', (m) => m.collected(gcReport({ dryRun: true })), {}],
];

describe('CacheMetrics.totals', () => {
  it.each(CASES)('%s', async (_name, act, moved) => {
    const metrics = new CacheMetrics();
    act(metrics);
    const totals = metrics.totals();
    expect(Object.keys(totals).sort()).toEqual([...COUNTER_NAMES].sort());
    for (const name of COUNTER_NAMES) expect(totals[name], name).toBe(moved[name] ?? 0);
  });
});

describe('CacheMetrics', () => {
  it('keeps its own registry: two instances never share counts, the global registry stays empty', async () => {
    const one = new CacheMetrics();
    const two = new CacheMetrics();
    one.request('pull', 200);
    expect(one.totals().requests).toBe(1);
    expect(two.totals().requests).toBe(0);
    expect(await register.getMetricsAsJSON()).toEqual([]);
  });

  it('remembers the last rate-limit headers per registry, and exposes them as gauges', async () => {
    let now = 1000;
    const metrics = new CacheMetrics({ now: () => now });
    metrics.rateLimitSeen('docker.io', 76, 100);
    now = 2000;
    metrics.rateLimitSeen('docker.io', 75, undefined);
    metrics.rateLimitSeen('ghcr.io', undefined, undefined);
    expect(metrics.upstreamHeadroom()).toEqual([
      { registry: 'docker.io', rateLimitRemaining: 75, observedAt: 2000 },
    ]);
    const text = parsePrometheusText(await metrics.prometheusText());
    expect(text.sum('image_cache_upstream_ratelimit_remaining', { registry: 'docker.io' })).toBe(
      75,
    );
  });

  it('reads the stored figures from the source at scrape time, and counts jobs by state', async () => {
    let stored = 10;
    const metrics = new CacheMetrics({
      storage: async () => ({ storedBytes: stored, storedBlobs: 2, images: 1, budgetBytes: 50 }),
    });
    metrics.jobStarted();
    metrics.jobStarted();
    metrics.jobEnded('failed');
    stored = 20;
    const text = parsePrometheusText(await metrics.prometheusText());
    expect(text.sum('image_cache_stored_bytes')).toBe(20);
    expect(text.sum('image_cache_stored_blobs')).toBe(2);
    expect(text.sum('image_cache_images')).toBe(1);
    expect(text.sum('image_cache_retention_budget_bytes')).toBe(50);
    expect(text.sum('image_cache_jobs', { state: 'running' })).toBe(1);
    expect(text.sum('image_cache_jobs', { state: 'failed' })).toBe(1);
  });
});

describe('CacheMetrics.totals and /metrics', () => {
  it('agree: each name is the sum of its series in the exposition, by the one table', async () => {
    const metrics = new CacheMetrics();
    for (const [, act] of CASES) act(metrics);
    const text = parsePrometheusText(await metrics.prometheusText());
    const totals = metrics.totals();
    for (const name of COUNTER_NAMES) {
      const { metric, filter } = SERIES[name];
      expect(totals[name], name).toBe(text.sum(metric, filter));
      expect(totals[name], name).toBeGreaterThan(0);
    }
  });
});
