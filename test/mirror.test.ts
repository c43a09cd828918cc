import { createHash } from 'node:crypto';
import { afterAll, afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { Digest } from '../lib/digest.ts';
import { stopAwsEmulators } from './support/aws-emulators.ts';
import { CACHE_BACKENDS, type CacheServer, startCacheServer } from './support/cache-server.ts';
import { FakeRegistry } from './support/fake-registry.ts';
import { type GeneratedImage, generateImage, generateIndex } from './support/image-factory.ts';

/**
 * The registry door over HTTP, against in-process registries that count every request: what a
 * registry client is answered, what it costs the upstream, and what the catalog makes of it.
 * Real clients (dockerd, containerd, skopeo) judge the same door in mirror-clients.test.ts.
 */

function sha(bytes: Uint8Array): Digest {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}` as Digest;
}

function ociError(body: unknown): { code: string; message: string } {
  return (body as { errors: { code: string; message: string }[] }).errors[0]!;
}

describe.each(CACHE_BACKENDS)('the registry door (%s backend)', (backend) => {
  let hub: FakeRegistry;
  let ghcr: FakeRegistry;
  let cache: CacheServer;
  let image: GeneratedImage;

  const start = async (flags: string[] = []) => {
    cache = await startCacheServer({
      registries: `docker.io=${hub.url.origin},ghcr.io=${ghcr.url.origin}`,
      flags: ['--gc-interval', '0', ...flags],
      backend,
    });
  };
  const get = (path: string, init: RequestInit = {}) => fetch(`${cache.url}${path}`, init);
  const manifestGets = (registry: FakeRegistry) =>
    registry.requests.filter((r) => r.method === 'GET' && r.path.includes('/manifests/')).length;

  beforeEach(async () => {
    hub = await FakeRegistry.start();
    ghcr = await FakeRegistry.start();
    image = await generateImage({
      seed: `door-${backend}`,
      layers: [{ files: [200_000] }, { files: [1000] }],
    });
    hub.serveImage('library/alpha', image, '1');
  });

  afterEach(async () => {
    await cache?.close();
    await hub.close();
    await ghcr.close();
  });

  afterAll(async () => {
    if (backend === 'aws') await stopAwsEmulators();
  });

  it('answers GET /v2/ with the API version header', async () => {
    await start();
    const response = await get('/v2/');
    expect(response.status).toBe(200);
    expect(response.headers.get('docker-distribution-api-version')).toBe('registry/2.0');
  });

  it('serves a manifest as the exact bytes, and a HEAD without a manifest GET upstream', async () => {
    await start();
    const head = await get('/v2/library/alpha/manifests/1', { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers.get('docker-content-digest')).toBe(image.digest);
    expect(head.headers.get('content-length')).toBe(String(image.bytes.length));
    expect(head.headers.get('content-type')).toBe(image.mediaType);
    expect(manifestGets(hub)).toBe(0);

    const response = await get('/v2/library/alpha/manifests/1');
    const raw = Buffer.from(await response.arrayBuffer());
    expect(raw.equals(image.bytes)).toBe(true);
    expect(response.headers.get('docker-content-digest')).toBe(image.digest);
    const byDigest = await get(`/v2/library/alpha/manifests/${image.digest}`);
    expect(Buffer.from(await byDigest.arrayBuffer()).equals(image.bytes)).toBe(true);
    // One GET by tag; the digest was remembered.
    expect(manifestGets(hub)).toBe(1);
  });

  it('streams blobs it does not hold, stores them, and tags the image once all is stored', async () => {
    await start();
    await get('/v2/library/alpha/manifests/1');
    for (const blob of image.blobs) {
      const response = await get(`/v2/library/alpha/blobs/${blob.digest}`);
      expect(response.status).toBe(200);
      expect(response.headers.get('content-length')).toBe(String(blob.size));
      expect(sha(Buffer.from(await response.arrayBuffer()))).toBe(blob.digest);
    }
    await vi.waitFor(
      async () => {
        const images = await (await get('/images/json')).json();
        expect(images.map((i: { RepoTags: string[] }) => i.RepoTags)).toEqual([['alpha:1']]);
      },
      { timeout: 15_000, interval: 200 },
    );
    for (const blob of image.blobs) {
      expect(hub.count(hub.blobPath('library/alpha', blob.digest), 'GET')).toBe(1);
    }
    // Served from the store now; by the Engine API too.
    const again = await get(`/v2/library/alpha/blobs/${image.layers[0]!.digest}`, {
      redirect: 'manual',
    });
    expect([200, 307]).toContain(again.status);
    expect(hub.count(hub.blobPath('library/alpha', image.layers[0]!.digest), 'GET')).toBe(1);
    expect((await get('/images/alpha:1/json')).status).toBe(200);
  });

  it('sends the first bytes of a blob before the upstream finished sending it', async () => {
    await start();
    const layer = image.layers[0]!;
    let open!: () => void;
    const gate = new Promise<void>((resolve) => {
      open = resolve;
    });
    hub.inject(hub.blobPath('library/alpha', layer.digest), {
      kind: 'slow',
      chunkBytes: 64 * 1024,
      delayMs: 1,
      gate: { afterBytes: 128 * 1024, open: gate },
    });
    const response = await get(`/v2/library/alpha/blobs/${layer.digest}`);
    const reader = response.body!.getReader();
    let received = 0;
    while (received < 64 * 1024) {
      const { value, done } = await reader.read();
      if (done) throw new Error('ended early');
      received += value.length;
    }
    // Bytes arrived while the upstream still holds the rest of the layer back.
    expect(received).toBeLessThan(layer.size);
    open();
    const chunks: Uint8Array[] = [];
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      chunks.push(value);
    }
    expect(received + chunks.reduce((n, c) => n + c.length, 0)).toBe(layer.size);
  });

  it('fetches a blob once for ten clients that miss it at the same time', async () => {
    await start();
    const layer = image.layers[0]!;
    const bodies = await Promise.all(
      Array.from({ length: 10 }, async () => {
        const response = await get(`/v2/library/alpha/blobs/${layer.digest}`);
        return Buffer.from(await response.arrayBuffer());
      }),
    );
    for (const body of bodies) expect(sha(body)).toBe(layer.digest);
    expect(hub.count(hub.blobPath('library/alpha', layer.digest), 'GET')).toBe(1);
  });

  it('cuts a blob that fails verification short, and stores nothing', async () => {
    await start();
    const layer = image.layers[0]!;
    hub.inject(hub.blobPath('library/alpha', layer.digest), { kind: 'corrupt', times: 10 });
    const response = await get(`/v2/library/alpha/blobs/${layer.digest}`);
    expect(response.status).toBe(200);
    await expect(response.arrayBuffer()).rejects.toThrow();
    expect((await cache.blobFiles()).has(layer.digest.slice(7))).toBe(false);
  });

  it('answers a Range of a blob with 206, stored or not', async () => {
    await start();
    const layer = image.layers[0]!;
    const bytes = layer.bytes!;
    const cold = await get(`/v2/library/alpha/blobs/${layer.digest}`, {
      headers: { range: 'bytes=100-1099' },
    });
    expect(cold.status).toBe(206);
    expect(cold.headers.get('content-range')).toBe(`bytes 100-1099/${bytes.length}`);
    expect(Buffer.from(await cold.arrayBuffer()).equals(bytes.subarray(100, 1100))).toBe(true);
    const tail = await get(`/v2/library/alpha/blobs/${layer.digest}`, {
      headers: { range: 'bytes=-10' },
      redirect: 'manual',
    });
    if (tail.status !== 307) {
      expect(tail.status).toBe(206);
      expect(Buffer.from(await tail.arrayBuffer()).equals(bytes.subarray(bytes.length - 10))).toBe(
        true,
      );
    }
    const past = await get(`/v2/library/alpha/blobs/${layer.digest}`, {
      headers: { range: `bytes=${bytes.length}-` },
    });
    expect(past.status).toBe(416);
  });

  it('picks the upstream by ns, by a registry path prefix, else docker.io', async () => {
    await start();
    const app = await generateImage({ seed: `ghcr-${backend}`, layers: 1 });
    ghcr.serveImage('org/app', app, '1');
    const byNs = await get('/v2/org/app/manifests/1?ns=ghcr.io');
    expect(byNs.status).toBe(200);
    expect(byNs.headers.get('oci-namespace')).toBe('ghcr.io');
    expect(byNs.headers.get('docker-content-digest')).toBe(app.digest);
    const byPrefix = await get('/v2/ghcr.io/org/app/manifests/1');
    expect(byPrefix.headers.get('docker-content-digest')).toBe(app.digest);
    expect(byPrefix.headers.get('oci-namespace')).toBeNull();
    // dockerd's mirror form: library/alpha on docker.io; `alpha` alone means the same.
    expect((await get('/v2/alpha/manifests/1')).headers.get('docker-content-digest')).toBe(
      image.digest,
    );
    expect(manifestGets(hub)).toBe(1);
  });

  it('refuses a registry outside the allow-list before any connection', async () => {
    await start();
    for (const path of ['/v2/quay.io/x/y/manifests/1', '/v2/x/y/manifests/1?ns=quay.io']) {
      const response = await get(path);
      expect(response.status).toBe(403);
      expect(ociError(await response.json())).toMatchObject({
        code: 'DENIED',
        message: expect.stringContaining('registry quay.io is not allowed'),
      });
    }
  });

  it.each([
    ['an unknown tag', '/v2/library/alpha/manifests/nope', 'GET', 404, 'MANIFEST_UNKNOWN'],
    [
      'an unknown blob',
      `/v2/library/alpha/blobs/sha256:${'0'.repeat(64)}`,
      'GET',
      404,
      'BLOB_UNKNOWN',
    ],
    ['a bad name', '/v2/Library/Alpha/manifests/1', 'GET', 400, 'NAME_INVALID'],
    ['a push', '/v2/library/alpha/manifests/2', 'PUT', 405, 'UNSUPPORTED'],
    ['a blob upload', '/v2/library/alpha/blobs/uploads/', 'POST', 405, 'UNSUPPORTED'],
    [
      'a delete',
      `/v2/library/alpha/manifests/sha256:${'1'.repeat(64)}`,
      'DELETE',
      405,
      'UNSUPPORTED',
    ],
  ])('answers %s with the spec error', async (_name, path, method, status, code) => {
    await start();
    const response = await get(path, { method, ...(method === 'PUT' && { body: '{}' }) });
    expect(response.status).toBe(status);
    expect(response.headers.get('docker-distribution-api-version')).toBe('registry/2.0');
    expect(ociError(await response.json()).code).toBe(code);
  });

  it('serves an index as the index, and a platform manifest asked by digest on demand', async () => {
    await start();
    const index = await generateIndex({
      seed: `door-index-${backend}`,
      format: 'oci',
      platforms: ['linux/amd64', 'linux/arm64/v8'],
      layers: 1,
    });
    hub.serveIndex('library/multi', index, '2');
    const top = await get('/v2/library/multi/manifests/2');
    expect(Buffer.from(await top.arrayBuffer()).equals(index.bytes)).toBe(true);
    const arm = index.images[1]!;
    const child = await get(`/v2/library/multi/manifests/${arm.digest}`);
    expect(Buffer.from(await child.arrayBuffer()).equals(arm.bytes)).toBe(true);
    for (const blob of arm.blobs)
      await (await get(`/v2/library/multi/blobs/${blob.digest}`)).arrayBuffer();
    await vi.waitFor(
      async () => {
        const inspect = await get('/images/multi:2/json');
        expect(inspect.status).toBe(200);
        expect((await inspect.json()).Architecture).toBe('arm64');
      },
      { timeout: 15_000, interval: 200 },
    );
    // The amd64 image was never asked for, so never fetched.
    for (const blob of index.images[0]!.layers) {
      expect(hub.count(hub.blobPath('library/multi', blob.digest))).toBe(0);
    }
  });

  it('serves a fresh tag without the upstream, revalidates a stale one with a HEAD, and serves the cache when the upstream is gone', async () => {
    await start(['--tag-ttl', '1s']);
    await get('/v2/library/alpha/manifests/1');
    for (const blob of image.blobs)
      await (await get(`/v2/library/alpha/blobs/${blob.digest}`)).arrayBuffer();
    await vi.waitFor(async () => expect((await get('/images/alpha:1/json')).status).toBe(200), {
      timeout: 15_000,
      interval: 200,
    });
    const before = hub.requests.length;
    await get('/v2/library/alpha/manifests/1');
    expect(hub.requests.length).toBe(before);

    await new Promise((r) => setTimeout(r, 1100));
    const moved = await generateImage({ seed: `door-moved-${backend}`, layers: 1 });
    hub.serveImage('library/alpha', moved, '1');
    const after = await get('/v2/library/alpha/manifests/1');
    expect(after.headers.get('docker-content-digest')).toBe(moved.digest);
    const path = hub.manifestPath('library/alpha', '1');
    expect(hub.count(path, 'HEAD')).toBe(1);

    // The upstream goes away: the cached answer stands.
    await new Promise((r) => setTimeout(r, 1100));
    hub.inject(path, { kind: 'status', status: 503, times: 100 });
    const stale = await get('/v2/library/alpha/manifests/1');
    expect(stale.status).toBe(200);
    expect(stale.headers.get('docker-content-digest')).toBe(image.digest);
  });

  it('passes tag lists and referrers through, with paging', async () => {
    await start();
    hub.serveImage('library/alpha', image, '2');
    hub.serveImage('library/alpha', image, '3');
    const first = await get('/v2/library/alpha/tags/list?n=2');
    expect(await first.json()).toEqual({ name: 'library/alpha', tags: ['1', '2'] });
    expect(first.headers.get('link')).toBe('</v2/library/alpha/tags/list?n=2&last=2>; rel="next"');
    const rest = await get('/v2/library/alpha/tags/list?n=2&last=2');
    expect((await rest.json()).tags).toEqual(['3']);

    const none = await get(`/v2/library/alpha/referrers/${image.digest}`);
    expect(none.status).toBe(200);
    expect((await none.json()).manifests).toEqual([]);
  });

  it('passes referrers through where the upstream has them', async () => {
    const signed = await FakeRegistry.start({ referrers: true });
    try {
      cache = await startCacheServer({
        registries: `docker.io=${signed.url.origin}`,
        flags: ['--gc-interval', '0'],
        backend,
      });
      signed.serveImage('library/alpha', image, '1');
      const signature = {
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        digest: `sha256:${'a'.repeat(64)}`,
        size: 100,
        artifactType: 'application/vnd.dev.cosign.artifact.sig.v1+json',
      };
      signed.addReferrer('library/alpha', image.digest, signature);
      const response = await get(`/v2/library/alpha/referrers/${image.digest}`);
      expect(response.headers.get('content-type')).toBe('application/vnd.oci.image.index.v1+json');
      expect((await response.json()).manifests).toEqual([signature]);
    } finally {
      await signed.close();
    }
  });

  describe('with access control', () => {
    const token = (scope: 'read' | 'pull') => cache.token(scope);

    it('challenges, issues a bearer token for Basic credentials, and takes either', async () => {
      await start(['--require-auth']);
      const anonymous = await get('/v2/');
      expect(anonymous.status).toBe(401);
      const challenge = anonymous.headers.get('www-authenticate')!;
      expect(challenge).toBe(`Bearer realm="${cache.url}/v2/token",service="image-cache"`);
      expect(ociError(await anonymous.json()).code).toBe('UNAUTHORIZED');

      const pull = await token('pull');
      const basic = `Basic ${Buffer.from(`anyone:${pull}`).toString('base64')}`;
      const issued = await get(
        '/v2/token?service=image-cache&scope=repository:library/alpha:pull',
        {
          headers: { authorization: basic },
        },
      );
      expect(issued.status).toBe(200);
      const { token: bearer } = await issued.json();
      expect((await get('/v2/', { headers: { authorization: `Bearer ${bearer}` } })).status).toBe(
        200,
      );
      expect((await get('/v2/', { headers: { authorization: basic } })).status).toBe(200);
      const wrong = `Basic ${Buffer.from('anyone:ic_nope').toString('base64')}`;
      expect((await get('/v2/token', { headers: { authorization: wrong } })).status).toBe(401);
      expect((await get('/v2/token')).status).toBe(401);
    });

    it('lets a read token see what is cached only, and a pull token fetch', async () => {
      await start(['--require-auth']);
      const read = { authorization: `Bearer ${await token('read')}` };
      const pull = { authorization: `Bearer ${await token('pull')}` };
      const refused = await get('/v2/library/alpha/manifests/1', { headers: read });
      expect(refused.status).toBe(403);
      expect(ociError(await refused.json())).toMatchObject({
        code: 'DENIED',
        message: expect.stringContaining('needs a token of scope pull'),
      });
      expect(hub.requests.filter((r) => r.path.startsWith('/v2/library'))).toEqual([]);
      expect((await get('/v2/library/alpha/manifests/1', { headers: pull })).status).toBe(200);
      for (const blob of image.blobs) {
        await (
          await get(`/v2/library/alpha/blobs/${blob.digest}`, { headers: pull })
        ).arrayBuffer();
      }
      await vi.waitFor(
        async () => {
          const cached = await get('/v2/library/alpha/manifests/1', { headers: read });
          expect(cached.status).toBe(200);
        },
        { timeout: 15_000, interval: 200 },
      );
      // Credentials a client sends are never passed on.
      expect(hub.requests.some((r) => r.headers.authorization)).toBe(false);
    });
  });
});
