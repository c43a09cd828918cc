/**
 * `GET /images/get?pull=missing` (and `image-cache save --pull`) against a real docker-registry
 * behind the recording proxy, so every upstream request is seen: an uncached image is pulled
 * and saved in one call (and a real dockerd loads it with the right image ID), a fresh cached
 * one costs no upstream request, a stale tag is revalidated with HEADs only, and what cannot be
 * pulled is refused before any byte. Runs over both backends.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stopAwsEmulators } from './support/aws-emulators.ts';
import { CACHE_BACKENDS, type CacheServer, startCacheServer } from './support/cache-server.ts';
import { runCliAgainst } from './support/cli-capture.ts';
import { type Dockerd, dockerdSkipReason, startDockerd } from './support/dockerd.ts';
import { type GeneratedImage, generateImage } from './support/image-factory.ts';
import { pushImage } from './support/push.ts';
import { type RecordingProxy, startRecordingProxy } from './support/recording-proxy.ts';
import { type RegistryServer, startRegistry } from './support/registry-server.ts';
import { fetchSave, readTar } from './support/save-fixtures.ts';
import { skipWhen } from './support/skips.ts';
import { tempDirs } from './support/tmp.ts';

const temps = tempDirs('save-pull');
const TAG_TTL_MS = 3_000;

afterAll(async () => {
  await stopAwsEmulators();
  await temps.cleanupAll();
});

interface Upstream {
  registry: RegistryServer;
  proxy: RecordingProxy;
  cache: CacheServer;
  images: Record<'loaded' | 'kept' | 'cli', GeneratedImage>;
  close(): Promise<void>;
}

/** Three images pushed under library/<name>:1, a cache whose upstream is the recording proxy. */
async function startUpstream(backend: 'embedded' | 'aws'): Promise<Upstream> {
  const registry = await startRegistry();
  const images = {
    loaded: await generateImage({ seed: 'save-pull-loaded', format: 'docker', layers: 2 }),
    kept: await generateImage({ seed: 'save-pull-kept', format: 'oci', layers: 1 }),
    cli: await generateImage({ seed: 'save-pull-cli', layers: 1 }),
  };
  for (const [name, image] of Object.entries(images)) {
    await pushImage({ url: registry.url, repository: `library/${name}` }, image, { tags: ['1'] });
  }
  const proxy = await startRecordingProxy(registry.url);
  const cache = await startCacheServer({
    registries: `docker.io=${proxy.url}`,
    backend,
    flags: ['--tag-ttl', `${TAG_TTL_MS}ms`],
  });
  return {
    registry,
    proxy,
    cache,
    images,
    close: async () => {
      await cache.close();
      await proxy.close();
      await registry.stop();
    },
  };
}

const pullPath = (names: string[], pull = 'missing') => {
  const query = new URLSearchParams();
  for (const name of names) query.append('names', name);
  query.set('pull', pull);
  return `/images/get?${query}`;
};

/** The image IDs (config digests) a docker save tarball holds, from its manifest.json. */
async function savedConfigs(body: Buffer): Promise<string[]> {
  const members = await readTar(body);
  const manifest = members.find((m) => m.name === 'manifest.json');
  const entries = JSON.parse(manifest!.data.toString()) as Array<{ Config: string }>;
  return entries.map((e) => `sha256:${e.Config.replace(/^blobs\/sha256\/|\.json$/g, '')}`);
}

const manifestRequests = (proxy: RecordingProxy) =>
  proxy.exchanges.filter((e) => e.path.includes('/manifests/'));

describe.each(CACHE_BACKENDS)('save with pull=missing on the %s backend', (backend) => {
  let up: Upstream;

  beforeAll(async () => {
    up = await startUpstream(backend);
  }, 120_000);
  afterAll(async () => {
    await up?.close();
  });

  it('pulls an uncached image, then a fresh one costs no upstream request', async () => {
    const first = await fetchSave(up.cache.url, pullPath(['kept:1']));
    expect(first.status, first.body.toString().slice(0, 300)).toBe(200);
    expect(await savedConfigs(first.body)).toEqual([up.images.kept.configBlob.digest]);
    expect(manifestRequests(up.proxy).some((e) => e.method === 'GET')).toBe(true);

    up.proxy.clear();
    const again = await fetchSave(up.cache.url, pullPath(['kept:1']));
    expect(again.status).toBe(200);
    expect(again.body.equals(first.body)).toBe(true);
    expect(up.proxy.exchanges).toEqual([]);
  });

  it('revalidates a stale tag with a manifest HEAD and no GET', async () => {
    expect((await fetchSave(up.cache.url, pullPath(['kept:1']))).status).toBe(200);
    await new Promise((resolve) => setTimeout(resolve, TAG_TTL_MS + 200));
    up.proxy.clear();
    const stale = await fetchSave(up.cache.url, pullPath(['kept:1']));
    expect(stale.status).toBe(200);
    expect(await savedConfigs(stale.body)).toEqual([up.images.kept.configBlob.digest]);
    const asked = manifestRequests(up.proxy);
    expect(asked.map((e) => e.method)).toContain('HEAD');
    expect(up.proxy.exchanges.filter((e) => e.method === 'GET' && e.path !== '/v2/')).toEqual([]);
  });

  it('answers 404 before any byte for an image the upstream does not have', async () => {
    up.proxy.clear();
    const missing = await fetchSave(up.cache.url, pullPath(['kept:1', 'nothere:1']));
    expect(missing.status).toBe(404);
    expect(missing.headers.get('content-type')).toBe('application/json');
    // Asked upstream, which did not know it: not a 404 from the cache alone.
    expect(manifestRequests(up.proxy).map((e) => e.path)).toContain(
      '/v2/library/nothere/manifests/1',
    );
  });

  it('never pulls an image ID: an uncached one stays a 404 with no upstream request', async () => {
    up.proxy.clear();
    const byId = await fetchSave(up.cache.url, pullPath(['0123456789ab'.repeat(5).slice(0, 64)]));
    expect(byId.status).toBe(404);
    expect(up.proxy.exchanges).toEqual([]);
  });

  it('refuses any other pull value with a 400 and no upstream request', async () => {
    up.proxy.clear();
    const refused = await fetchSave(up.cache.url, pullPath(['cli:1'], 'always'));
    expect(refused.status).toBe(400);
    expect(JSON.parse(refused.body.toString()).message).toMatch(/pull must be "missing"/);
    expect(up.proxy.exchanges).toEqual([]);
    // Plain save is unchanged: not cached is a 404, and nothing is pulled.
    expect((await fetchSave(up.cache.url, '/images/get?names=cli:1')).status).toBe(404);
    expect(up.proxy.exchanges).toEqual([]);
  });

  it('image-cache save --pull writes the tarball of an uncached image', async () => {
    const dir = await temps.create();
    const file = dir.file('cli.tar');
    const saved = await runCliAgainst(up.cache.url, ['save', '--pull', '-o', file, 'cli:1']);
    expect(saved.stderr).not.toMatch(/Error/);
    expect(saved.code).toBe(0);
    expect(await savedConfigs(await readFile(file))).toEqual([up.images.cli.configBlob.digest]);
  });
});

const skip = dockerdSkipReason();

describe(
  `save with pull=missing loaded by a real dockerd${skip ? ` (skipped: ${skip})` : ''}`,
  skipWhen(skip),
  () => {
    let up: Upstream;
    let engine: Dockerd;

    beforeAll(async () => {
      [up, engine] = await Promise.all([startUpstream('embedded'), startDockerd()]);
    }, 180_000);
    afterAll(async () => {
      await engine?.stop();
      await up?.close();
    });

    it('loads an image the cache did not hold, with its image ID', async () => {
      const saved = await fetchSave(up.cache.url, pullPath(['loaded:1']));
      expect(saved.status, saved.body.toString().slice(0, 300)).toBe(200);
      const dir = await temps.create();
      const file = dir.file('loaded.tar');
      await writeFile(file, saved.body);
      const loaded = await engine.docker(['load', '-i', file]);
      expect(loaded.code, loaded.stderr).toBe(0);
      expect(loaded.stdout).toBe('Loaded image: loaded:1\n');
      const inspected = await engine.docker([
        'image',
        'inspect',
        '--format',
        '{{.Id}}',
        'loaded:1',
      ]);
      expect(inspected.stdout.trim()).toBe(up.images.loaded.configBlob.digest);
    });
  },
);
