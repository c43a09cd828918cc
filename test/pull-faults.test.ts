import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type Composition, composeEmbedded } from '../lib/composition.ts';
import { parseServeArgs } from '../lib/config.ts';
import { digestHex } from '../lib/digest.ts';
import { createRouter } from '../lib/engine/router.ts';
import type { ProgressMessage } from '../lib/pull.ts';
import { parsePullParams } from '../lib/reference.ts';
import type { FakeRegistry } from './support/fake-registry.ts';
import { generateImage, generateIndex } from './support/image-factory.ts';
import { FAST_RETRY, Harness, ManualClock } from './support/upstream-harness.ts';

/**
 * The pull use case against the in-process fake registry, where faults can be injected: what
 * the cache stores (or does not) when the upstream misbehaves, and how often it asks.
 */
const TTL = 5 * 60_000;

describe('pull against a misbehaving upstream', () => {
  const harness = new Harness();
  let registry: FakeRegistry;
  let dataDir: string;
  let clock: ManualClock;
  let cache: Composition;

  beforeEach(async () => {
    registry = await harness.registry();
    dataDir = await mkdtemp(join(tmpdir(), 'pull-faults-'));
    clock = new ManualClock();
    const config = parseServeArgs(['--data', dataDir, '--tag-ttl', '5m'], {
      IMAGE_CACHE_REGISTRIES: `docker.io=${registry.url.origin}`,
    });
    const upstream = harness.upstream(registry, { registries: config.registries, clock });
    cache = composeEmbedded(config, { clock, upstream });
  });

  afterEach(async () => {
    await cache.close();
    await harness.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  const pull = (name: string, onProgress?: (m: ProgressMessage) => void, platform?: string) =>
    cache.context.pulls.pull(parsePullParams(name), {
      onProgress,
      platform: platform
        ? (() => {
            const [os, architecture, variant] = platform.split('/');
            return { os: os!, architecture: architecture!, ...(variant ? { variant } : {}) };
          })()
        : undefined,
    });
  const blobFile = (digest: string) => join(dataDir, 'blobs/sha256', digestHex(digest as never));

  it.each([
    ['corrupt bytes', { kind: 'corrupt' as const, times: 100 }],
    ['a short body', { kind: 'size' as const, delta: -10, times: 100 }],
    ['a long body', { kind: 'size' as const, delta: 10, times: 100 }],
  ])('refuses %s in a layer and stores neither the layer nor a tag', async (_name, fault) => {
    const image = await generateImage({ seed: 'bad', layers: 2 });
    registry.serveImage('library/bad', image, '1');
    const layer = image.layers[1]!;
    registry.inject(registry.blobPath('library/bad', layer.digest), fault);
    await expect(pull('bad:1')).rejects.toMatchObject({
      code: expect.stringMatching(/DIGEST_MISMATCH|UPSTREAM_ERROR/),
    });
    expect(existsSync(blobFile(layer.digest))).toBe(false);
    expect(await cache.context.catalog.getTag('docker.io/library/bad', '1')).toBeUndefined();
    expect(await cache.context.catalog.getManifest(image.digest)).toBeUndefined();
    expect(readdirSync(join(dataDir, 'blobs/tmp'))).toEqual([]);
  });

  it('resumes a layer after a connection reset and stores the right bytes', async () => {
    const image = await generateImage({ seed: 'reset', layers: [{ files: [400_000] }] });
    registry.serveImage('library/reset', image, '1');
    const layer = image.layers[0]!;
    registry.inject(registry.blobPath('library/reset', layer.digest), {
      kind: 'reset',
      afterBytes: 100_000,
    });
    await pull('reset:1');
    const ranges = registry
      .requestsTo(registry.blobPath('library/reset', layer.digest), 'GET')
      .map((r) => r.headers.range);
    expect(ranges).toEqual([undefined, expect.stringMatching(/^bytes=\d+-$/)]);
    const stored = createHash('sha256').update(readFileSync(blobFile(layer.digest)));
    expect(`sha256:${stored.digest('hex')}`).toBe(layer.digest);
  });

  it('shares one upstream fetch per blob between concurrent pulls of images with common layers', async () => {
    const base = await generateImage({ seed: 'base', layers: 2 });
    const a = await generateImage({ seed: 'a', layers: 1, baseLayers: base.layers });
    const b = await generateImage({ seed: 'b', layers: 1, baseLayers: base.layers });
    registry.serveImage('library/a', a, '1');
    registry.serveImage('library/b', b, '1');
    await Promise.all([pull('a:1'), pull('a:1'), pull('b:1'), pull('a:1')]);
    for (const layer of base.layers) {
      const gets = registry.requests.filter(
        (r) => r.method === 'GET' && r.path.endsWith(layer.digest),
      );
      expect(gets).toHaveLength(1);
    }
    expect(registry.count(registry.manifestPath('library/a', '1'), 'GET')).toBe(1);
  });

  it('serves a fresh tag without asking, revalidates a stale one with HEAD only', async () => {
    const image = await generateImage({ seed: 'ttl', layers: 1 });
    registry.serveImage('library/ttl', image, '1');
    const path = registry.manifestPath('library/ttl', '1');
    await pull('ttl:1');
    expect(registry.count(path, 'GET')).toBe(1);

    clock.advance(TTL - 1000);
    const messages: ProgressMessage[] = [];
    await pull('ttl:1', (m) => messages.push(m));
    expect(registry.count(path)).toBe(1);
    expect(messages.at(-1)?.status).toBe('Status: Image is up to date for ttl:1');

    clock.advance(2000);
    await pull('ttl:1');
    expect(registry.count(path, 'HEAD')).toBe(1);
    expect(registry.count(path, 'GET')).toBe(1);
  });

  it('follows a tag that moved upstream', async () => {
    const first = await generateImage({ seed: 'v1', layers: 1 });
    const second = await generateImage({ seed: 'v2', layers: 1 });
    registry.serveImage('library/moving', first, 'latest');
    await pull('moving');
    registry.serveImage('library/moving', second, 'latest');
    clock.advance(TTL + 1);
    const result = await pull('moving');
    expect(result.manifest.digest).toBe(second.digest);
    expect(result.upToDate).toBe(false);
  });

  it('serves the cached image when the upstream is down after the TTL (stale-if-error)', async () => {
    const image = await generateImage({ seed: 'stale', layers: 1 });
    registry.serveImage('library/stale', image, '1');
    await pull('stale:1');
    clock.advance(TTL + 1);
    registry.inject(registry.manifestPath('library/stale', '1'), {
      kind: 'status',
      status: 503,
      times: 100,
    });
    const messages: ProgressMessage[] = [];
    const result = await pull('stale:1', (m) => messages.push(m));
    expect(result.manifest.digest).toBe(image.digest);
    expect(messages.some((m) => /unavailable.*serving the cached image/.test(m.status))).toBe(true);
  });

  it('serves the cached image when the upstream rate-limits beyond the wait it accepts', async () => {
    const image = await generateImage({ seed: 'limited', layers: 1 });
    registry.serveImage('library/limited', image, '1');
    await pull('limited:1');
    clock.advance(TTL + 1);
    registry.inject(registry.manifestPath('library/limited', '1'), {
      kind: 'status',
      status: 429,
      headers: { 'retry-after': '3600' },
      times: 100,
    });
    const messages: ProgressMessage[] = [];
    await pull('limited:1', (m) => messages.push(m));
    expect(messages.some((m) => /serving the cached image/.test(m.status))).toBe(true);
  });

  it('waits out a short 429 Retry-After and then pulls', async () => {
    const image = await generateImage({ seed: 'retry', layers: 1 });
    registry.serveImage('library/retry', image, '1');
    registry.inject(registry.manifestPath('library/retry', '1'), {
      kind: 'status',
      status: 429,
      headers: { 'retry-after': '1' },
    });
    const result = await pull('retry:1');
    expect(result.manifest.digest).toBe(image.digest);
    expect(registry.count(registry.manifestPath('library/retry', '1'), 'GET')).toBe(2);
  });

  it('pulls a second platform from the stored index without fetching the index again', async () => {
    const index = await generateIndex({
      seed: 'idx',
      format: 'docker',
      platforms: ['linux/amd64', 'linux/arm/v7'],
      layers: 1,
    });
    registry.serveIndex('library/idx', index, '1');
    await pull('idx:1');
    const arm = await pull('idx:1', undefined, 'linux/arm/v7');
    expect(arm.manifest.digest).toBe(index.images[1]!.digest);
    expect(registry.count(registry.manifestPath('library/idx', '1'))).toBe(1);
    const tag = await cache.context.catalog.getTag('docker.io/library/idx', '1');
    expect(tag).toMatchObject({ platform: 'linux/arm/v7', source: index.digest });
  });

  it.each([
    ['an unknown tag', 'fromImage=docker.io%2Flibrary%2Fnothing&tag=1', 404, /not found/],
    ['a bad reference', 'fromImage=library%2FNginx&tag=1', 400, /invalid reference format/],
    ['a registry not allowed', 'fromImage=quay.io%2Fx%2Fy&tag=1', 403, /not allowed/],
    ['a bad platform', 'fromImage=x&tag=1&platform=linux', 400, /invalid platform/],
  ])('answers %s with its status before streaming', async (_name, query, status, message) => {
    const router = createRouter(cache.context);
    const response = await router({
      method: 'POST',
      path: '/v1.47/images/create',
      query: new URLSearchParams(query),
      headers: {},
    });
    expect(response.status).toBe(status);
    expect(JSON.parse(String(response.body)).message).toMatch(message);
    expect(
      registry.requests.filter(
        (r) => r.path.includes('/manifests/') && !r.path.includes('nothing'),
      ),
    ).toEqual([]);
  });

  it('reports the rate limit the registry announced on /cache/registries', async () => {
    const limited = await harness.registry({
      rateLimit: { limit: 100, remaining: 42, windowSeconds: 21600, source: '203.0.113.9' },
    });
    const config = parseServeArgs(['--data', dataDir], {
      IMAGE_CACHE_REGISTRIES: `docker.io=${limited.url.origin}`,
    });
    const upstream = harness.upstream(limited, { registries: config.registries, clock });
    const other = composeEmbedded(config, { clock, upstream });
    try {
      const image = await generateImage({ seed: 'quota', layers: 1 });
      limited.serveImage('library/quota', image, '1');
      await other.context.pulls.pull(parsePullParams('quota:1'));
      const response = await createRouter(other.context)({
        method: 'GET',
        path: '/cache/registries',
        query: new URLSearchParams(),
        headers: {},
      });
      const [docker] = JSON.parse(String(response.body));
      expect(docker).toMatchObject({
        Name: 'docker.io',
        RateLimit: { limit: 100, windowSeconds: 21600, source: '203.0.113.9' },
      });
      expect(docker.RateLimit.remaining).toBeLessThanOrEqual(42);
    } finally {
      await other.close();
    }
  });

  it('answers 502 when the upstream keeps failing', async () => {
    registry.inject(registry.manifestPath('library/down', '1'), {
      kind: 'status',
      status: 500,
      times: 100,
    });
    const router = createRouter(cache.context);
    const response = await router({
      method: 'POST',
      path: '/images/create',
      query: new URLSearchParams('fromImage=down&tag=1'),
      headers: {},
    });
    expect(response.status).toBe(502);
    expect(registry.count(registry.manifestPath('library/down', '1'))).toBe(FAST_RETRY.attempts);
  });
});
