/**
 * GET /cache/stats through the project's own server (embedded backend) filled by real pulls from
 * a real registry. The storage figures come from what the pulls stored; the counters come from a
 * totals source the test counts by hand, as CacheMetrics will once composed (the recorder only
 * reads `totals()`). The point is the history: what one server process counted is still there
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

function start(totals: CounterTotals, flags: string[] = []): Promise<CacheServer> {
  return startCacheServer({
    registries: `docker.io=${registry.url}`,
    dataDir,
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
