import { afterEach, describe, expect, it, vi } from 'vitest';
import { sha256 } from '../lib/digest.ts';
import { DigestMismatchError, RegistryNotAllowedError, UpstreamError } from '../lib/errors.ts';
import { MAX_JSON_BYTES, MediaType } from '../lib/media-types.ts';
import { HttpUpstream } from '../lib/registry/http-upstream.ts';
import { pushImage, pushIndex, schema1Manifest } from './support/fake-registry.ts';
import { Harness, ManualClock, REGISTRY, rejection, repoOf } from './support/upstream-harness.ts';

const harness = new Harness();
afterEach(() => harness.close());

const app = repoOf('library/app');

describe('HttpUpstream manifests', () => {
  it('fetches a manifest by tag with the four accepted media types and verifies it', async () => {
    const registry = await harness.registry();
    const image = pushImage(registry, 'library/app', '1', { format: 'docker' });
    const upstream = harness.upstream(registry);

    const manifest = await upstream.getManifest(app, '1');

    expect(manifest.digest).toBe(image.digest);
    expect(manifest.mediaType).toBe(MediaType.dockerManifest);
    expect(Buffer.from(manifest.raw).equals(image.raw)).toBe(true);
    const accept = String(registry.requestsTo('/v2/library/app/manifests/1')[0]?.headers.accept);
    for (const type of [
      MediaType.ociIndex,
      MediaType.dockerManifestList,
      MediaType.ociManifest,
      MediaType.dockerManifest,
    ]) {
      expect(accept).toContain(type);
    }
    expect(accept).not.toContain('distribution.manifest.v1');
  });

  it('fetches an index by digest', async () => {
    const registry = await harness.registry();
    const image = pushImage(registry, 'library/app', 'amd64');
    const index = pushIndex(registry, 'library/app', '1', [image]);
    const manifest = await harness.upstream(registry).getManifest(app, index.digest);
    expect(manifest).toMatchObject({ digest: index.digest, mediaType: MediaType.ociIndex });
  });

  it('infers the media type when the registry answers application/json', async () => {
    const registry = await harness.registry();
    pushImage(registry, 'library/app', '1');
    registry.inject('/v2/library/app/manifests/1', {
      kind: 'header',
      name: 'content-type',
      value: 'application/json',
    });
    const manifest = await harness.upstream(registry).getManifest(app, '1');
    expect(manifest.mediaType).toBe(MediaType.ociManifest);
  });

  it('refuses bytes that do not match Docker-Content-Digest (by tag)', async () => {
    const registry = await harness.registry();
    pushImage(registry, 'library/app', '1');
    registry.inject('/v2/library/app/manifests/1', {
      kind: 'header',
      name: 'docker-content-digest',
      value: sha256('something else'),
    });
    const error = await rejection(harness.upstream(registry).getManifest(app, '1'));
    expect(error).toBeInstanceOf(DigestMismatchError);
    expect(error.message).toContain('Docker-Content-Digest');
  });

  it('refuses bytes that do not hash to the requested digest', async () => {
    const registry = await harness.registry();
    const image = pushImage(registry, 'library/app', '1');
    registry.inject(`/v2/library/app/manifests/${image.digest}`, { kind: 'corrupt' });
    const error = await rejection(harness.upstream(registry).getManifest(app, image.digest));
    expect(error).toBeInstanceOf(DigestMismatchError);
    expect(error.message).toContain(image.digest);
  });

  it.each([
    ['declared by Content-Type', MediaType.dockerSchema1Signed],
    ['found in a body served as application/json', 'application/json'],
  ])('refuses schema 1 %s', async (_case, contentType) => {
    const registry = await harness.registry();
    registry.addManifest('library/old', '1', schema1Manifest('library/old', '1'), contentType);
    const error = await rejection(
      harness.upstream(registry).getManifest(repoOf('library/old'), '1'),
    );
    expect(error.code).toBe('UNSUPPORTED_MEDIA_TYPE');
    expect(error.message).toBe(
      `${REGISTRY}/library/old:1 uses manifest schema 1, which is no longer supported; push it again with a current client`,
    );
  });

  it('refuses manifests over the 4 MiB cap', async () => {
    const registry = await harness.registry();
    const huge = JSON.stringify({ schemaVersion: 2, pad: 'x'.repeat(MAX_JSON_BYTES) });
    registry.addManifest('library/app', 'big', huge, MediaType.ociManifest);
    const error = await rejection(harness.upstream(registry).getManifest(app, 'big'));
    expect(error.code).toBe('PAYLOAD_TOO_LARGE');
  });

  it('answers HEAD from Docker-Content-Digest without a GET', async () => {
    const registry = await harness.registry();
    const image = pushImage(registry, 'library/app', '1');
    const head = await harness.upstream(registry).headManifest(app, '1');
    expect(head).toEqual({
      digest: image.digest,
      mediaType: image.mediaType,
      size: image.raw.length,
    });
    expect(registry.count('/v2/library/app/manifests/1', 'HEAD')).toBe(1);
    expect(registry.count('/v2/library/app/manifests/1', 'GET')).toBe(0);
  });

  it('falls back to GET and hashes when HEAD has no Docker-Content-Digest', async () => {
    const registry = await harness.registry();
    const image = pushImage(registry, 'library/app', '1');
    registry.inject(
      '/v2/library/app/manifests/1',
      { kind: 'header', name: 'docker-content-digest', value: undefined },
      'HEAD',
    );
    const head = await harness.upstream(registry).headManifest(app, '1');
    expect(head.digest).toBe(image.digest);
    expect(registry.count('/v2/library/app/manifests/1', 'GET')).toBe(1);
  });

  it('words a missing tag like docker pull does', async () => {
    const registry = await harness.registry();
    pushImage(registry, 'library/app', '1');
    const upstream = harness.upstream(registry);
    const error = await rejection(upstream.getManifest(app, 'nope'));
    expect(error).toBeInstanceOf(UpstreamError);
    expect(error.code).toBe('NOT_FOUND');
    expect(error.message).toBe(
      `manifest for ${REGISTRY}/library/app:nope not found: manifest unknown: manifest unknown`,
    );
    const head = await rejection(upstream.headManifest(app, 'nope'));
    expect(head.code).toBe('NOT_FOUND');
    const repo = await rejection(upstream.getManifest(repoOf('library/none'), '1'));
    expect(repo.message).toContain('name unknown');
  });

  it('refuses a registry outside the allow-list before any connection', async () => {
    const registry = await harness.registry();
    const upstream = harness.upstream(registry);
    const other = { registry: registry.host, repository: 'library/app' };
    await expect(upstream.getManifest(other, '1')).rejects.toBeInstanceOf(RegistryNotAllowedError);
    await expect(upstream.headManifest(other, '1')).rejects.toBeInstanceOf(RegistryNotAllowedError);
    await expect(upstream.getBlob(other, { digest: sha256('x'), size: 1 })).rejects.toBeInstanceOf(
      RegistryNotAllowedError,
    );
    expect(registry.requests).toHaveLength(0);
  });

  it('connects through the guarded DNS lookup for host names', async () => {
    const registry = await harness.registry();
    const image = pushImage(registry, 'library/app', '1');
    const byName = new URL(registry.url);
    byName.hostname = 'localhost';
    const upstream = harness.upstream(registry, { registries: new Map([[REGISTRY, byName]]) });
    expect((await upstream.getManifest(app, '1')).digest).toBe(image.digest);
  });

  it('refuses path tricks in repository names and tags', async () => {
    const registry = await harness.registry();
    const upstream = harness.upstream(registry);
    await expect(upstream.getManifest(repoOf('../v2'), '1')).rejects.toThrow(/invalid repository/);
    await expect(upstream.getManifest(app, '1?x=../')).rejects.toThrow(/invalid tag/);
    expect(registry.requests).toHaveLength(0);
  });
});

describe('HttpUpstream retries and rate limits', () => {
  it('retries a burst of 500s and then succeeds', async () => {
    const registry = await harness.registry();
    pushImage(registry, 'library/app', '1');
    registry.inject('/v2/library/app/manifests/1', { kind: 'status', status: 500, times: 2 });
    await harness.upstream(registry).getManifest(app, '1');
    expect(registry.count('/v2/library/app/manifests/1')).toBe(3);
  });

  it('gives up on persistent 500s with a retryable UPSTREAM_ERROR', async () => {
    const registry = await harness.registry();
    pushImage(registry, 'library/app', '1');
    registry.inject('/v2/library/app/manifests/1', { kind: 'status', status: 503, times: 100 });
    const error = await rejection(harness.upstream(registry).getManifest(app, '1'));
    expect(error).toBeInstanceOf(UpstreamError);
    expect(error.code).toBe('UPSTREAM_ERROR');
    expect((error as UpstreamError).retryable).toBe(true);
    expect(error.message).toContain('503');
    expect(registry.count('/v2/library/app/manifests/1')).toBe(4);
  });

  it('retries a connection reset in the middle of a manifest body', async () => {
    const registry = await harness.registry();
    const image = pushImage(registry, 'library/app', '1', { layerSizes: [1, 2, 3] });
    registry.inject('/v2/library/app/manifests/1', { kind: 'reset', afterBytes: 40 });
    const manifest = await harness.upstream(registry).getManifest(app, '1');
    expect(manifest.digest).toBe(image.digest);
  });

  it('reports a refused connection as a retryable UPSTREAM_ERROR', async () => {
    const registry = await harness.registry();
    const upstream = harness.upstream(registry);
    await registry.close();
    const error = await rejection(upstream.getManifest(app, '1'));
    expect(error.code).toBe('UPSTREAM_ERROR');
    expect(error.message).toContain('ECONNREFUSED');
  });

  it('honours Retry-After on 429 and records the RateLimit headers', async () => {
    const registry = await harness.registry({
      rateLimit: { limit: 100, remaining: 10, windowSeconds: 21600, source: '203.0.113.9' },
    });
    pushImage(registry, 'library/app', '1');
    registry.inject('/v2/library/app/manifests/1', {
      kind: 'status',
      status: 429,
      headers: { 'retry-after': '1' },
    });
    const clock = new ManualClock();
    const upstream = harness.upstream(registry, { clock });
    const started = Date.now();
    await upstream.getManifest(app, '1');
    expect(Date.now() - started).toBeGreaterThanOrEqual(950);
    expect(registry.count('/v2/library/app/manifests/1')).toBe(2);
    expect(upstream.rateLimit(REGISTRY)).toEqual({
      limit: 100,
      remaining: 9,
      windowSeconds: 21600,
      source: '203.0.113.9',
      observedAt: clock.now(),
    });
    expect(upstream.rateLimit('docker.io')).toBeUndefined();
  });

  it('fails at once when Retry-After is longer than it is willing to wait', async () => {
    const registry = await harness.registry();
    pushImage(registry, 'library/app', '1');
    registry.inject('/v2/library/app/manifests/1', {
      kind: 'status',
      status: 429,
      headers: {
        'retry-after': '3600',
        'ratelimit-limit': '100;w=21600',
        'ratelimit-remaining': '0;w=21600',
      },
    });
    const error = await rejection(harness.upstream(registry).getManifest(app, '1'));
    expect(error.code).toBe('UPSTREAM_RATE_LIMITED');
    expect((error as UpstreamError).retryable).toBe(true);
    expect(error.message).toContain('limit 100 pulls per 6 h');
    expect(error.message).toContain('resets in 3600 s');
    expect(registry.count('/v2/library/app/manifests/1')).toBe(1);
  });

  it('times out a manifest body that stalls', async () => {
    const registry = await harness.registry();
    pushImage(registry, 'library/app', '1');
    const upstream = new HttpUpstream({
      registries: new Map([[REGISTRY, registry.url]]),
      retry: { attempts: 1, baseDelayMs: 1, maxDelayMs: 1 },
      timeouts: { headersMs: 200, bodyMs: 200 },
    });
    registry.inject('/v2/library/app/manifests/1', { kind: 'stall', afterBytes: 10 });
    const error = await rejection(upstream.getManifest(app, '1'));
    await upstream.close();
    expect(error.code).toBe('UPSTREAM_TIMEOUT');
  });

  it('gives up a manifest body that drips, however steadily', async () => {
    const registry = await harness.registry();
    pushImage(registry, 'library/app', '1');
    const path = '/v2/library/app/manifests/1';
    // A byte every 20 ms never trips the 200 ms silence limit; the whole-body limit ends it.
    const upstream = new HttpUpstream({
      registries: new Map([[REGISTRY, registry.url]]),
      retry: { attempts: 1, baseDelayMs: 1, maxDelayMs: 1 },
      timeouts: { bodyMs: 200, jsonBodyMs: 500 },
    });
    registry.inject(path, { kind: 'slow', chunkBytes: 1, delayMs: 20 });
    const error = await rejection(upstream.getManifest(app, '1'));
    await upstream.close();
    expect(error.code).toBe('UPSTREAM_TIMEOUT');
    expect(error.message).toMatch(/did not arrive within 0\.5s/);
    await vi.waitFor(() => expect(registry.active(path)).toBe(0));
  });
});
