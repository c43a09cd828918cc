import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stopAwsEmulators } from './support/aws-emulators.ts';
import { CACHE_BACKENDS, type CacheServer, startCacheServer } from './support/cache-server.ts';
import { docker } from './support/docker-cli.ts';
import { FakeRegistry } from './support/fake-registry.ts';
import { type GeneratedImage, generateImage } from './support/image-factory.ts';
import { type Exposition, parsePrometheusText } from './support/prometheus-text.ts';
import { pushImage } from './support/push.ts';
import { type RecordingProxy, startRecordingProxy } from './support/recording-proxy.ts';
import { type RegistryServer, startRegistry } from './support/registry-server.ts';

/**
 * /metrics judged by what real clients did: the docker CLI pulls and saves through DOCKER_HOST,
 * a registry client (fetch) reads through /v2/, the CNCF registry plays Docker Hub behind a
 * recording proxy that counts what the cache asked upstream, and an in-process registry answers
 * 429 with Docker Hub's rate-limit headers. The exposition is read by a Prometheus text parser
 * and every expected number comes from the generated images or the proxy, never from the cache.
 */

const RATE_LIMITED = 'quay.io';

afterAll(stopAwsEmulators);

describe.each(CACHE_BACKENDS)(
  'GET /metrics counts what the clients did (%s backend)',
  (backend) => {
    let registry: RegistryServer;
    let upstream: RecordingProxy;
    let limited: FakeRegistry;
    let cache: CacheServer;
    let image: GeneratedImage;
    let work: string;

    const scrape = async (): Promise<Exposition> => {
      const response = await fetch(`${cache.url}/metrics`);
      expect(response.status).toBe(200);
      expect(response.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
      return parsePrometheusText(await response.text());
    };
    const lookups = (m: Exposition, where: Record<string, string>) =>
      m.sum('image_cache_lookups_total', { registry: 'docker.io', ...where });
    const upstreamGets = () => upstream.exchanges.filter((e) => e.method === 'GET');

    beforeAll(async () => {
      work = await mkdtemp(join(tmpdir(), 'image-cache-metrics-'));
      registry = await startRegistry();
      image = await generateImage({ seed: 'metrics', format: 'docker', layers: 2 });
      await pushImage({ url: registry.url, repository: 'library/app' }, image, { tags: ['1'] });
      upstream = await startRecordingProxy(registry.url);
      limited = await FakeRegistry.start();
      cache = await startCacheServer({
        registries: `docker.io=${upstream.url},${RATE_LIMITED}=${limited.url.origin}`,
        backend,
      });
    });

    afterAll(async () => {
      await cache?.close();
      await upstream?.close();
      await limited?.close();
      await registry?.stop();
      await rm(work, { recursive: true, force: true });
    });

    it('a cold pull counts the manifest and blob misses, the bytes fetched and every upstream request', async () => {
      const pulled = await docker(cache.hostPort, ['pull', 'app:1']);
      expect(pulled.code).toBe(0);
      const m = await scrape();
      expect(lookups(m, { kind: 'manifest', result: 'miss', door: 'engine' })).toBe(1);
      expect(lookups(m, { kind: 'blob', result: 'miss', door: 'engine' })).toBe(image.blobs.length);
      expect(lookups(m, { result: 'hit' })).toBe(0);
      const blobBytes = image.blobs.reduce((sum, blob) => sum + blob.size, 0);
      expect(m.sum('image_cache_upstream_fetched_bytes_total', { registry: 'docker.io' })).toBe(
        blobBytes,
      );
      // Every request the proxy saw, and Docker Hub's pull count: the manifest GETs among them.
      expect(m.sum('image_cache_upstream_requests_total', { registry: 'docker.io' })).toBe(
        upstream.exchanges.length,
      );
      const manifestGets = upstreamGets().filter((e) => e.path.includes('/manifests/')).length;
      expect(manifestGets).toBe(1);
      expect(m.sum('image_cache_dockerhub_manifest_gets_total')).toBe(manifestGets);
      expect(m.sum('image_cache_operation_duration_seconds_count', { operation: 'pull' })).toBe(1);
      expect(m.sum('image_cache_requests_total', { family: 'pull', status: '200' })).toBe(1);
    });

    it('a second pull counts hits and asks the upstream nothing', async () => {
      const before = upstream.exchanges.length;
      expect((await docker(cache.hostPort, ['pull', 'app:1'])).code).toBe(0);
      expect(upstream.exchanges.length).toBe(before);
      const m = await scrape();
      expect(lookups(m, { kind: 'manifest', result: 'hit', door: 'engine' })).toBe(1);
      expect(lookups(m, { kind: 'blob', result: 'hit', door: 'engine' })).toBe(image.blobs.length);
      expect(m.sum('image_cache_upstream_requests_total')).toBe(before);
      expect(m.sum('image_cache_dockerhub_manifest_gets_total')).toBe(1);
    });

    it('the registry door counts its own hits and the bytes it served', async () => {
      const manifest = await fetch(`${cache.url}/v2/library/app/manifests/1`, {
        headers: { accept: image.mediaType },
      });
      expect(manifest.status).toBe(200);
      await manifest.arrayBuffer();
      const layer = image.layers[0]!;
      const blob = await fetch(`${cache.url}/v2/library/app/blobs/${layer.digest}`);
      expect(blob.status).toBe(200);
      expect((await blob.arrayBuffer()).byteLength).toBe(layer.size);
      const m = await scrape();
      expect(lookups(m, { kind: 'manifest', result: 'hit', door: 'registry' })).toBe(1);
      expect(lookups(m, { kind: 'blob', result: 'hit', door: 'registry' })).toBe(1);
      expect(lookups(m, { result: 'miss', door: 'registry' })).toBe(0);
      expect(m.sum('image_cache_served_bytes_total', { door: 'registry' })).toBe(layer.size);
      // On S3 the stored blob is a 307 to a presigned URL (fetch follows it): still from the cache.
      expect(m.sum('image_cache_requests_total', { family: 'registry' })).toBe(2);
      expect(m.sum('image_cache_requests_total', { family: 'registry', class: '4xx' })).toBe(0);
    });

    it('a docker save counts the bytes of the tarball it served', async () => {
      const file = join(work, 'app.tar');
      const saved = await docker(cache.hostPort, ['save', '-o', file, 'app:1']);
      expect(saved.code).toBe(0);
      const m = await scrape();
      expect(m.sum('image_cache_served_bytes_total', { door: 'engine' })).toBe(
        (await stat(file)).size,
      );
      expect(m.sum('image_cache_operation_duration_seconds_count', { operation: 'save' })).toBe(1);
      expect(m.sum('image_cache_requests_total', { family: 'save', status: '200' })).toBe(1);
    });

    // Only the AWS backend has exports to redirect to.
    if (backend === 'aws') {
      it('a save answered by a redirect to its export counts the tarball it hands out', async () => {
        const before = (await scrape()).sum('image_cache_served_bytes_total', { door: 'engine' });
        const answer = await fetch(`${cache.url}/images/get?names=app:1&redirect=1`, {
          redirect: 'manual',
        });
        expect(answer.status).toBe(307);
        const tarball = await fetch(answer.headers.get('location')!);
        const bytes = (await tarball.arrayBuffer()).byteLength;
        const m = await scrape();
        expect(m.sum('image_cache_served_bytes_total', { door: 'engine' }) - before).toBe(bytes);
        expect(m.sum('image_cache_operation_duration_seconds_count', { operation: 'save' })).toBe(
          2,
        );
      });
    }

    it("a 429 is counted, with the upstream's RateLimit-Remaining and RateLimit-Limit", async () => {
      const throttled = await generateImage({ seed: 'metrics-429', format: 'docker', layers: 1 });
      limited.serveImage('team/app', throttled, '1');
      limited.inject('/v2/team/app/manifests/1', {
        kind: 'status',
        status: 429,
        headers: {
          'retry-after': '3600',
          'ratelimit-limit': '100;w=21600',
          'ratelimit-remaining': '0;w=21600',
        },
      });
      const pulled = await docker(cache.hostPort, ['pull', `${RATE_LIMITED}/team/app:1`]);
      expect(pulled.code).not.toBe(0);
      expect(pulled.stderr).toContain('rate limit');
      const m = await scrape();
      const from = { registry: RATE_LIMITED };
      expect(m.sum('image_cache_upstream_requests_total', { ...from, outcome: 'throttled' })).toBe(
        1,
      );
      expect(m.sum('image_cache_upstream_ratelimit_remaining', from)).toBe(0);
      expect(m.sum('image_cache_upstream_ratelimit_limit', from)).toBe(100);
      // Not Docker Hub: its manifest GETs are not what Docker Hub's limit counts.
      expect(m.sum('image_cache_dockerhub_manifest_gets_total')).toBe(1);
    });

    it('a registry client that asks for a blob being downloaded joins the one download', async () => {
      const slow = await generateImage({
        seed: 'metrics-join',
        format: 'docker',
        layers: [{ files: [300_000] }],
      });
      limited.serveImage('team/slow', slow, '1');
      const layer = slow.layers[0]!;
      const path = limited.blobPath('team/slow', layer.digest);
      let open!: () => void;
      const gate = new Promise<void>((resolve) => {
        open = resolve;
      });
      limited.inject(
        path,
        { kind: 'slow', chunkBytes: 16_384, delayMs: 0, gate: { afterBytes: 16_384, open: gate } },
        'GET',
      );
      const before = await scrape();
      const url = `${cache.url}/v2/${RATE_LIMITED}/team/slow/blobs/${layer.digest}`;
      const read = (response: Response) => response.arrayBuffer().then((b) => b.byteLength);
      const first = fetch(url).then(read);
      await until(async () => limited.requestsTo(path, 'GET').length === 1);
      const second = fetch(url).then(read);
      await until(async () => (await scrape()).sum('image_cache_single_flight_joins_total') === 1);
      open();
      expect(await Promise.all([first, second])).toEqual([layer.size, layer.size]);
      const m = await scrape();
      expect(limited.requestsTo(path, 'GET')).toHaveLength(1);
      expect(m.sum('image_cache_single_flight_joins_total', { work: 'blob' })).toBe(1);
      const misses = { kind: 'blob', result: 'miss', door: 'registry', registry: RATE_LIMITED };
      expect(m.sum('image_cache_lookups_total', misses)).toBe(2);
      expect(m.sum('image_cache_upstream_fetched_bytes_total', { registry: RATE_LIMITED })).toBe(
        layer.size,
      );
      // The first client got the bytes as they came; the one that joined, from the store.
      const served = (e: Exposition) =>
        e.sum('image_cache_served_bytes_total', { door: 'registry' });
      expect(served(m) - served(before)).toBe(layer.size);
    });

    it('a collection counts its run and the bytes it reclaimed', async () => {
      expect((await docker(cache.hostPort, ['rmi', 'app:1'])).code).toBe(0);
      const m = await scrape();
      const blobBytes = image.blobs.reduce((sum, blob) => sum + blob.size, 0);
      expect(m.sum('image_cache_gc_runs_total', { trigger: 'prune' })).toBe(1);
      expect(m.sum('image_cache_gc_reclaimed_bytes_total')).toBe(blobBytes);
      const left = await cache.blobFiles();
      for (const blob of image.blobs)
        expect(left.has(blob.digest.slice('sha256:'.length))).toBe(false);
    });

    it('labels every counter family and exposes the histogram buckets', async () => {
      const m = await scrape();
      expect(m.types.get('image_cache_requests_total')).toBe('counter');
      expect(m.types.get('image_cache_operation_duration_seconds')).toBe('histogram');
      expect(m.types.get('image_cache_jobs')).toBe('gauge');
      expect(
        m.has('image_cache_operation_duration_seconds_bucket', { operation: 'pull', le: '+Inf' }),
      ).toBe(true);
      // Scrapes count as requests too, in their own family.
      expect(m.sum('image_cache_requests_total', { family: 'metrics' })).toBeGreaterThanOrEqual(6);
    });
  },
);

/** Polls `done` until it holds; the test's own timeout bounds the wait. */
async function until(done: () => Promise<boolean>): Promise<void> {
  while (!(await done())) await new Promise((resolve) => setTimeout(resolve, 20));
}

describe('GET /metrics with access control on', () => {
  let cache: CacheServer;

  beforeAll(async () => {
    cache = await startCacheServer({ registries: '', flags: ['--require-auth'] });
  });
  afterAll(() => cache?.close());

  it('refuses a request without a token or with a wrong one, and answers a read token', async () => {
    expect((await fetch(`${cache.url}/metrics`)).status).toBe(401);
    const wrong = await fetch(`${cache.url}/metrics`, {
      headers: { authorization: 'Bearer ic_not-a-token' },
    });
    expect(wrong.status).toBe(401);
    const read = await cache.token('read');
    const answered = await fetch(`${cache.url}/metrics`, {
      headers: { authorization: `Bearer ${read}` },
    });
    expect(answered.status).toBe(200);
    const m = parsePrometheusText(await answered.text());
    // The two refusals were counted before this scrape was answered.
    expect(m.sum('image_cache_requests_total', { family: 'metrics', status: '401' })).toBe(2);
  });
});
