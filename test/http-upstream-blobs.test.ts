import { PassThrough, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { DigestMismatchError, UpstreamError } from '../lib/errors.ts';
import { makeBlob } from './support/fake-registry.ts';
import { Harness, readAll, rejection, repoOf } from './support/upstream-harness.ts';

const harness = new Harness();
afterEach(() => harness.close());

const app = repoOf('library/app');

async function withBlob(size: number, options = {}) {
  const registry = await harness.registry(options);
  const bytes = makeBlob(size);
  const digest = registry.addBlob(bytes);
  const path = registry.blobPath('library/app', digest);
  return { registry, bytes, digest, path, blob: { digest, size } };
}

describe('HttpUpstream blobs', () => {
  it('streams a blob and verifies it', async () => {
    const { registry, bytes, blob } = await withBlob(300_000);
    const stream = await harness.upstream(registry).getBlob(app, blob);
    expect((await readAll(stream)).equals(bytes)).toBe(true);
  });

  it('rejects the call itself for an unknown blob', async () => {
    const { registry } = await withBlob(10);
    const missing = { digest: `sha256:${'0'.repeat(64)}` as never, size: 1 };
    const error = await rejection(harness.upstream(registry).getBlob(app, missing));
    expect(error.code).toBe('NOT_FOUND');
    expect(error.message).toContain('blob unknown');
  });

  it('errors the stream at the end when the bytes are corrupt', async () => {
    const { registry, digest, path, blob } = await withBlob(100_000);
    registry.inject(path, { kind: 'corrupt' });
    const stream = await harness.upstream(registry).getBlob(app, blob);
    const error = await rejection(readAll(stream));
    expect(error).toBeInstanceOf(DigestMismatchError);
    expect(error.message).toContain(`expected ${digest}`);
  });

  it.each([
    ['short', -10, /expected 5000 bytes, got 4990/],
    ['long', 10, /more than the expected 5000 bytes/],
  ])('errors the stream when the body is too %s', async (_name, delta, message) => {
    const { registry, path, blob } = await withBlob(5000);
    registry.inject(path, { kind: 'size', delta });
    const stream = await harness.upstream(registry).getBlob(app, blob);
    const error = await rejection(readAll(stream));
    expect(error).toBeInstanceOf(DigestMismatchError);
    expect(error.message).toMatch(message);
  });

  it('leaves the sha256 to the consumer with size-only, but still enforces the size', async () => {
    const { registry, bytes, path, blob } = await withBlob(5000);
    registry.inject(path, { kind: 'corrupt' });
    const upstream = harness.upstream(registry);
    const corrupt = await readAll(await upstream.getBlob(app, blob, { verify: 'size-only' }));
    expect(corrupt.length).toBe(bytes.length);
    expect(corrupt.equals(bytes)).toBe(false);
    registry.inject(path, { kind: 'size', delta: -1 });
    const short = await upstream.getBlob(app, blob, { verify: 'size-only' });
    expect(await rejection(readAll(short))).toBeInstanceOf(DigestMismatchError);
  });

  it('resumes a broken transfer with Range from the byte it stopped at', async () => {
    const { registry, bytes, path, blob } = await withBlob(1_000_000);
    registry.inject(path, { kind: 'reset', afterBytes: 300_000 });
    const stream = await harness.upstream(registry).getBlob(app, blob);
    const received = await readAll(stream);
    expect(received.equals(bytes)).toBe(true);
    const requests = registry.requestsTo(path);
    expect(requests).toHaveLength(2);
    expect(requests[0]?.headers.range).toBeUndefined();
    const start = Number(/^bytes=(\d+)-$/.exec(String(requests[1]?.headers.range))?.[1]);
    expect(start).toBeGreaterThan(0);
    expect(start).toBeLessThanOrEqual(300_000);
  });

  it('resumes across several breaks, each making progress', async () => {
    const { registry, bytes, path, blob } = await withBlob(800_000);
    registry.inject(path, { kind: 'reset', afterBytes: 100_000, times: 6 });
    const stream = await harness.upstream(registry).getBlob(app, blob);
    expect((await readAll(stream)).equals(bytes)).toBe(true);
    expect(registry.count(path)).toBe(7);
  });

  it('restarts correctly when the registry ignores Range, without duplicating bytes', async () => {
    const { registry, bytes, path, blob } = await withBlob(600_000, { rangeSupport: false });
    registry.inject(path, { kind: 'reset', afterBytes: 250_000 });
    const stream = await harness.upstream(registry).getBlob(app, blob);
    const received = await readAll(stream);
    expect(received.length).toBe(bytes.length);
    expect(received.equals(bytes)).toBe(true);
    expect(registry.requestsTo(path)[1]?.headers.range).toMatch(/^bytes=\d+-$/);
  });

  it('fails the stream when every attempt breaks without progress', async () => {
    const { registry, path, blob } = await withBlob(50_000);
    registry.inject(path, { kind: 'reset', afterBytes: 1000 });
    registry.inject(path, { kind: 'reset', afterBytes: 0, times: 20 });
    const stream = await harness.upstream(registry).getBlob(app, blob);
    const error = await rejection(readAll(stream));
    expect(error).toBeInstanceOf(UpstreamError);
    expect(error.code).toBe('UPSTREAM_ERROR');
    expect(error.message).toContain('at byte 1000 of 50000');
    // The failure after 1000 bytes starts the streak; three more without progress end it
    // (attempts = 4).
    expect(registry.count(path)).toBe(4);
  });

  it('resumes after a body stall hits the body timeout', async () => {
    const { registry, bytes, path, blob } = await withBlob(200_000);
    registry.inject(path, { kind: 'stall', afterBytes: 70_000 });
    const upstream = harness.upstream(registry, { timeouts: { bodyMs: 150 } });
    const stream = await upstream.getBlob(app, blob);
    expect((await readAll(stream)).equals(bytes)).toBe(true);
    expect(registry.count(path)).toBe(2);
  });

  it('waits for a slow body as long as data keeps coming', async () => {
    const { registry, bytes, path, blob } = await withBlob(50_000);
    registry.inject(path, { kind: 'slow', chunkBytes: 5_000, delayMs: 20 });
    const upstream = harness.upstream(registry, { timeouts: { bodyMs: 1_000 } });
    const stream = await upstream.getBlob(app, blob);
    expect((await readAll(stream)).equals(bytes)).toBe(true);
    expect(registry.count(path)).toBe(1);
  });

  it('retries 500s before the body starts', async () => {
    const { registry, bytes, path, blob } = await withBlob(10_000);
    registry.inject(path, { kind: 'status', status: 502, times: 2 });
    const stream = await harness.upstream(registry).getBlob(app, blob);
    expect((await readAll(stream)).equals(bytes)).toBe(true);
    expect(registry.count(path)).toBe(3);
  });

  it('follows a redirect to a CDN without sending it the Authorization header', async () => {
    const { registry, bytes, digest, path, blob } = await withBlob(100_000, {
      auth: { kind: 'bearer' },
    });
    const cdn = await harness.registry();
    cdn.addBlob(bytes);
    registry.inject(path, { kind: 'redirect', to: cdn.cdnUrl(digest), times: 2 });
    // The reset makes the resume go through the registry (and its redirect) a second time.
    cdn.inject(`/cdn/${digest}`, { kind: 'reset', afterBytes: 40_000 });
    const stream = await harness.upstream(registry).getBlob(app, blob);
    expect((await readAll(stream)).equals(bytes)).toBe(true);

    const atRegistry = registry.requestsTo(path);
    expect(atRegistry.at(-1)?.headers.authorization).toMatch(/^Bearer /);
    const atCdn = cdn.requestsTo(`/cdn/${digest}`);
    expect(atCdn).toHaveLength(2);
    for (const request of atCdn) expect(request.headers.authorization).toBeUndefined();
    expect(atCdn[1]?.headers.range).toMatch(/^bytes=\d+-$/);
  });

  it('asks the registry again when the CDN refuses its signed URL', async () => {
    const { registry, bytes, digest, path, blob } = await withBlob(1000);
    const cdn = await harness.registry();
    cdn.addBlob(bytes);
    registry.inject(path, { kind: 'redirect', to: cdn.cdnUrl(digest), times: 2 });
    cdn.inject(`/cdn/${digest}`, { kind: 'status', status: 403 });
    const stream = await harness.upstream(registry).getBlob(app, blob);
    expect((await readAll(stream)).equals(bytes)).toBe(true);
    expect(registry.count(path)).toBe(2);
  });

  it.each([
    ['link-local metadata', 'http://169.254.169.254/latest/meta-data/'],
    ['a non-http scheme', 'file:///etc/passwd'],
  ])('refuses a redirect to %s', async (_name, to) => {
    const { registry, path, blob } = await withBlob(10);
    registry.inject(path, { kind: 'redirect', to });
    const error = await rejection(harness.upstream(registry).getBlob(app, blob));
    expect(error.message).toMatch(/refusing redirect/);
  });

  it('stops after five redirects', async () => {
    const { registry, path, blob } = await withBlob(10);
    registry.inject(path, { kind: 'redirect', to: new URL(path, registry.url).href, times: 10 });
    const error = await rejection(harness.upstream(registry).getBlob(app, blob));
    expect(error.message).toContain('more than 5 redirects');
  });

  it('applies backpressure and lets the consumer stop early', async () => {
    const { registry, path, blob } = await withBlob(4_000_000);
    const stream = await harness.upstream(registry).getBlob(app, blob);
    let seen = 0;
    const slow = new Writable({
      highWaterMark: 1024,
      write(chunk: Buffer, _encoding, callback) {
        seen += chunk.length;
        if (seen > 500_000) callback(new Error('consumer gave up'));
        else setImmediate(callback);
      },
    });
    await expect(pipeline(stream, new PassThrough(), slow)).rejects.toThrow('consumer gave up');
    expect(stream.destroyed).toBe(true);
    expect(registry.count(path)).toBe(1);
  });
});
