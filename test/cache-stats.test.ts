/**
 * GET /cache/stats through the project's own server (embedded backend) filled by real pulls from
 * a real registry. The storage figures come from what the pulls stored; the counters of the first
 * suites come from a totals source the test counts by hand (to check the report's arithmetic
 * exactly), the last suite's from the server's own CacheMetrics. The point is the history: what one server process counted is still there
 * after a restart on the same data folder, including the counts of its last minute.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CounterTotals } from '../lib/metrics/names.ts';
import { zeroTotals } from '../lib/metrics/stats-recorder.ts';
import { hourOf } from '../lib/ports/stats-log.ts';
import type { StatsReport } from '../lib/stats/stats-report.ts';
import { type CacheServer, pullVia, startCacheServer } from './support/cache-server.ts';
import { runCliAgainst } from './support/cli-capture.ts';
import { type GeneratedImage, generateImage } from './support/image-factory.ts';
import { pushImage } from './support/push.ts';
import { type RegistryServer, startRegistry } from './support/registry-server.ts';

let registry: RegistryServer;
let dataDir: string;
let nginx: GeneratedImage;
let busybox: GeneratedImage;

beforeAll(async () => {
  registry = await startRegistry();
  nginx = await generateImage({ seed: 'stats-nginx', format: 'docker', layers: 2 });
  busybox = await generateImage({ seed: 'stats-busybox', format: 'oci', layers: 1 });
  await pushImage({ url: registry.url, repository: 'library/nginx' }, nginx, { tags: ['1.27'] });
  await pushImage({ url: registry.url, repository: 'library/busybox' }, busybox, { tags: ['1'] });
  dataDir = await mkdtemp(join(tmpdir(), 'image-cache-stats-'));
});

afterAll(async () => {
  await registry?.stop();
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

function start(
  totals: CounterTotals,
  flags: string[] = [],
  /** null: a fresh folder. */
  data: string | null = dataDir,
): Promise<CacheServer> {
  return startCacheServer({
    registries: `docker.io=${registry.url}`,
    ...(data !== null && { dataDir: data }),
    flags: ['--max-bytes', '1GB', ...flags],
    totals: () => totals,
  });
}

async function stats(
  cache: CacheServer,
  query = '',
  headers: Record<string, string> = {},
): Promise<{ status: number; body: StatsReport & { message?: string } }> {
  const response = await fetch(`${cache.url}/cache/stats${query}`, { headers });
  return {
    status: response.status,
    body: (await response.json()) as StatsReport & { message?: string },
  };
}

const sizeOf = (image: GeneratedImage) => image.blobs.reduce((sum, blob) => sum + blob.size, 0);

describe('GET /cache/stats on the embedded server', () => {
  it('answers the counters and storage of real pulls, and keeps them across a restart', async () => {
    const first = zeroTotals();
    let cache = await start(first);
    try {
      for (const [image, tag] of [
        [nginx, 'nginx:1.27'],
        [busybox, 'busybox:1'],
      ] as const) {
        const [name, version] = tag.split(':') as [string, string];
        const pull = await pullVia(cache.url, { fromImage: name, tag: version });
        expect(pull.status, pull.body).toBe(200);
        // What CacheMetrics counts for a first pull: the manifest and every blob from upstream.
        first.manifestMisses += 1;
        first.blobMisses += image.blobs.length;
        first.bytesFetched += sizeOf(image);
        first.pulls += 1;
      }
      const again = await pullVia(cache.url, { fromImage: 'nginx', tag: '1.27' });
      expect(again.status).toBe(200);
      first.manifestHits += 1;
      first.blobHits += nginx.blobs.length;
      first.pulls += 1;

      const { status, body } = await stats(cache);
      expect(status).toBe(200);
      expect(body.totals).toEqual(first);
      expect(body.pullsSaved).toBe(1);
      const hits = 1 + nginx.blobs.length;
      const lookups = hits + 2 + nginx.blobs.length + busybox.blobs.length;
      expect(body.hitRatio).toBeCloseTo(hits / lookups, 10);
      const files = await cache.blobFiles();
      expect(body.storage).toMatchObject({
        storedBytes: [...files.values()].reduce((a, b) => a + b, 0),
        storedBlobs: files.size,
        images: 2,
        budgetBytes: 1e9,
      });
      expect(body.storage.storedBytes).toBe(sizeOf(nginx) + sizeOf(busybox));
      expect(Date.parse(body.storage.measuredAt ?? '')).toBeGreaterThan(Date.now() - 60_000);
      // One hour, unless the test ran across the turn of one.
      const now = hourOf(Date.now());
      const hours = body.hours.filter((h) => Date.parse(h.hour) >= now - 3.6e6);
      expect(hours).toEqual(body.hours);
      expect(body.hours.at(-1)?.hour).toBe(new Date(now).toISOString());
      if (body.hours.length === 1) {
        expect(body.hours[0]?.counters).toEqual(
          Object.fromEntries(Object.entries(first).filter(([, n]) => n > 0)),
        );
      }
      expect(body.upstreams).toEqual([{ registry: 'docker.io' }]);
      expect(Date.parse(body.until) - Date.parse(body.since)).toBeGreaterThanOrEqual(168 * 3.6e6);

      // Counted after the last answer: only the shutdown flush can carry these over.
      first.requests += 7;
      first.upstreamThrottled += 2;
    } finally {
      await cache.close();
    }

    const second = zeroTotals();
    second.requests = 1;
    cache = await start(second);
    try {
      const { body } = await stats(cache, '?since=72h');
      expect(body.totals).toEqual({ ...first, requests: first.requests + 1 });
      expect(body.storage.images).toBe(2);
      expect(body.storage.storedBytes).toBe(sizeOf(nginx) + sizeOf(busybox));
    } finally {
      await cache.close();
    }
  });

  it('takes since as a duration or an RFC 3339 time, and refuses anything else with a 400', async () => {
    const cache = await start(zeroTotals());
    try {
      const hourAgo = new Date(Date.now() - 3_600_000);
      const rfc = await stats(cache, `?since=${encodeURIComponent(hourAgo.toISOString())}`);
      expect(rfc.status).toBe(200);
      expect(rfc.body.since).toBe(new Date(hourOf(hourAgo.getTime())).toISOString());
      expect((await stats(cache, '?since=30m')).status).toBe(200);
      const lower = hourAgo.toISOString().toLowerCase();
      expect((await stats(cache, `?since=${lower}`)).body.since).toBe(rfc.body.since);
      for (const [since, message] of [
        ['yesterday', /invalid since "yesterday"/],
        ['-5h', /invalid since/],
        ['2026-13-45T00:00:00Z', /invalid since/],
        ['36d', /more than 35 days/],
        [new Date(Date.now() + 3_600_000).toISOString(), /in the future/],
      ] as const) {
        const bad = await stats(cache, `?since=${encodeURIComponent(since)}`);
        expect(bad.status, since).toBe(400);
        expect(bad.body.message).toMatch(message);
      }
    } finally {
      await cache.close();
    }
  });

  it('needs a read token when access control is on', async () => {
    const cache = await start(zeroTotals(), ['--require-auth']);
    try {
      expect((await stats(cache)).status).toBe(401);
      const token = await cache.token('read');
      const answer = await stats(cache, '', { Authorization: `Bearer ${token}` });
      expect(answer.status).toBe(200);
      expect(answer.body.storage.images).toBe(2);
    } finally {
      await cache.close();
    }
  });
});

describe('the history of what CacheMetrics counted (no hand-kept totals)', () => {
  it('records the real counts of real pulls, and they survive a restart', async () => {
    const folder = await mkdtemp(join(tmpdir(), 'image-cache-stats-real-'));
    const open = () =>
      startCacheServer({ registries: `docker.io=${registry.url}`, dataDir: folder });
    const expected = {
      manifestMisses: 1,
      blobMisses: nginx.blobs.length,
      bytesFetched: sizeOf(nginx),
      manifestHits: 1,
      blobHits: nginx.blobs.length,
      pulls: 2,
    };
    const counted = (body: StatsReport) =>
      Object.fromEntries(Object.keys(expected).map((name) => [name, body.totals[name as never]]));
    try {
      let cache = await open();
      try {
        for (let i = 0; i < 2; i++) {
          const pull = await pullVia(cache.url, { fromImage: 'nginx', tag: '1.27' });
          expect(pull.status, pull.body).toBe(200);
        }
        const { body } = await stats(cache);
        expect(counted(body)).toEqual(expected);
        expect(body.totals.upstreamRequests).toBeGreaterThan(0);
        expect(body.pullsSaved).toBe(1);
      } finally {
        await cache.close();
      }
      cache = await open();
      try {
        const { body } = await stats(cache);
        expect(counted(body)).toEqual(expected);
      } finally {
        await cache.close();
      }
    } finally {
      await rm(folder, { recursive: true, force: true });
    }
  });
});

describe('image-cache stats against the server', () => {
  it('prints the summary with the figures /cache/stats answers, and its JSON with --json', async () => {
    const totals = zeroTotals();
    // A data folder of its own, so the window holds only what this test counts.
    const cache = await start(totals, [], null);
    try {
      expect((await pullVia(cache.url, { fromImage: 'busybox', tag: '1' })).status).toBe(200);
      Object.assign(totals, {
        requests: 40,
        manifestHits: 3,
        manifestMisses: 1,
        blobHits: 6,
        blobMisses: 2,
        bytesServed: 3_000_000,
        bytesFetched: 1_500_000,
        upstreamRequests: 5,
        upstreamThrottled: 1,
        hubManifestGets: 1,
      });
      const summary = await runCliAgainst(cache.url, ['stats', '--since', '72h']);
      expect(summary.stderr).toBe('');
      expect(summary.code).toBe(0);
      const out = summary.stdout;
      expect(out).toMatch(/^Hit ratio: +75\.0% \(9 hits, 3 misses\)$/m);
      expect(out).toMatch(/^Pulls saved: +3 upstream manifest GETs$/m);
      expect(out).toMatch(/^Served: +3MB from the cache$/m);
      expect(out).toMatch(
        /^Fetched: +1\.5MB from upstreams \(5 requests, 0 failed, 1 throttled with 429\)$/m,
      );
      expect(out).toMatch(/^Storage: .* of 1GB budget \(0\.0%\), 2 blobs, 1 image \(measured /m);
      const today = new Date().toISOString().slice(0, 10);
      expect(out).toMatch(
        new RegExp(
          `^DAY +REQUESTS +HIT RATIO +PULLS SAVED +SERVED +FETCHED +429s\n(.*\n)*${today} +40 +75\\.0% +3 +3MB +1\\.5MB +1$`,
          'm',
        ),
      );

      const json = await runCliAgainst(cache.url, ['stats', '--json', '--since', '72h']);
      expect(json.code).toBe(0);
      const fromCli = JSON.parse(json.stdout) as StatsReport;
      const direct = await stats(cache, '?since=72h');
      // Live figures carry the time of their answer, as until does.
      const timeless = (r: StatsReport) => ({
        ...r,
        until: '',
        storage: { ...r.storage, measuredAt: '' },
      });
      expect(timeless(fromCli)).toEqual(timeless(direct.body));
      expect(fromCli.totals).toEqual(totals);

      const bad = await runCliAgainst(cache.url, ['stats', '--since', 'last week']);
      expect(bad.code).toBe(1);
      expect(bad.stderr).toMatch(/invalid since "last week"/);
    } finally {
      await cache.close();
    }
  });
});
