import { existsSync, readdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type Composition, composeAws, composeEmbedded } from '../lib/composition.ts';
import { parseServeArgs } from '../lib/config.ts';
import type { Digest } from '../lib/digest.ts';
import { MediaType } from '../lib/media-types.ts';
import { parsePullParams } from '../lib/reference.ts';
import { awsEmulators, freshResourceNames, stopAwsEmulators } from './support/aws-emulators.ts';
import { makeLayer } from './support/fake-images.ts';
import { digestOf, type FakeRegistry, makeBlob } from './support/fake-registry.ts';
import { generateImage } from './support/image-factory.ts';
import { Harness, ManualClock } from './support/upstream-harness.ts';

/**
 * A registry that serves images whose bytes all hash right but do not make an image: a config
 * too large to buffer, layers that are not tars or do not unpack to the config's diff_ids, a
 * config that lists another number of layers. Such a pull must fail before anything is tagged,
 * on both backends, and the oversized config must not be fetched at all.
 */

interface HostileLayer {
  bytes: Buffer;
  diffId: Digest;
}

/** Serves an image built from raw parts; `configSize` overrides what the descriptor says. */
function serveRaw(
  registry: FakeRegistry,
  repo: string,
  tag: string,
  parts: { layers: HostileLayer[]; diffIds?: Digest[]; configBytes?: Buffer; configSize?: number },
): { digest: Digest; config: Digest; layers: Digest[] } {
  const configBytes =
    parts.configBytes ??
    Buffer.from(
      JSON.stringify({
        architecture: 'amd64',
        os: 'linux',
        rootfs: { type: 'layers', diff_ids: parts.diffIds ?? parts.layers.map((l) => l.diffId) },
      }),
    );
  const config = registry.addBlob(configBytes);
  const layers = parts.layers.map((layer) => registry.addBlob(layer.bytes));
  const manifest = {
    schemaVersion: 2,
    mediaType: MediaType.ociManifest,
    config: {
      mediaType: MediaType.ociConfig,
      digest: config,
      size: parts.configSize ?? configBytes.length,
    },
    layers: parts.layers.map((layer, i) => ({
      mediaType: MediaType.ociLayerGzip,
      digest: layers[i],
      size: layer.bytes.length,
    })),
  };
  const digest = registry.addManifest(repo, tag, JSON.stringify(manifest), MediaType.ociManifest);
  return { digest, config, layers };
}

const BACKENDS = ['embedded', 'aws'] as const;

describe.each(BACKENDS)('a pull from a hostile registry (%s backend)', (backend) => {
  const harness = new Harness();
  let registry: FakeRegistry;
  let dataDir: string;
  let cache: Composition;

  beforeEach(async () => {
    registry = await harness.registry();
    dataDir = await mkdtemp(join(tmpdir(), 'pull-hostile-'));
    const clock = new ManualClock();
    const registries = `docker.io=${registry.url.origin}`;
    if (backend === 'embedded') {
      const config = parseServeArgs(['--data', dataDir], { IMAGE_CACHE_REGISTRIES: registries });
      const upstream = harness.upstream(registry, { registries: config.registries, clock });
      cache = composeEmbedded(config, { clock, upstream });
      return;
    }
    const emulators = await awsEmulators();
    Object.assign(process.env, emulators.env);
    const names = freshResourceNames();
    const config = parseServeArgs(['--backend', 'aws', '--create-resources'], {
      ...emulators.env,
      IMAGE_CACHE_BUCKET: names.bucket,
      IMAGE_CACHE_TABLE: names.table,
      IMAGE_CACHE_REGISTRIES: registries,
    });
    const upstream = harness.upstream(registry, { registries: config.registries, clock });
    cache = await composeAws(config, { clock, upstream });
  });

  afterEach(async () => {
    await cache.close();
    await harness.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  afterAll(async () => {
    if (backend === 'aws') await stopAwsEmulators();
  });

  const pull = (name: string) => cache.context.pulls.pull(parsePullParams(name));

  async function storedBlobs(): Promise<Digest[]> {
    const digests: Digest[] = [];
    for await (const blob of cache.context.blobs.list()) digests.push(blob.digest);
    return digests;
  }

  /** Nothing of the image is tagged or recorded as a manifest. */
  async function expectNotTagged(repo: string, tag: string, manifest: Digest) {
    expect(await cache.context.catalog.getTag(`docker.io/${repo}`, tag)).toBeUndefined();
    expect(await cache.context.catalog.getManifest(manifest)).toBeUndefined();
    if (backend === 'embedded') {
      const tmp = join(dataDir, 'blobs/tmp');
      expect(existsSync(tmp) ? readdirSync(tmp) : []).toEqual([]);
    }
  }

  it.each([
    ['says 300 MB', 300_000_000],
    ['is 5 MiB', undefined],
  ])(
    'refuses a config that %s before fetching a byte of it, and stores nothing',
    async (_name, configSize) => {
      const configBytes = Buffer.from(`{"pad":"${'x'.repeat(5 * 1024 * 1024)}"}`);
      const image = serveRaw(registry, 'library/big', '1', {
        layers: [makeLayer(100)],
        configBytes,
        configSize,
      });
      await expect(pull('big:1')).rejects.toMatchObject({
        code: 'PAYLOAD_TOO_LARGE',
        message: expect.stringMatching(
          /config sha256:[a-f0-9]{64} .* configs are limited to 4194304/,
        ),
      });
      expect(registry.count(registry.blobPath('library/big', image.config))).toBe(0);
      expect(registry.count(registry.blobPath('library/big', image.layers[0]!))).toBe(0);
      expect(await storedBlobs()).toEqual([]);
      await expectNotTagged('library/big', '1', image.digest);
    },
  );

  it('refuses a layer that does not unpack to its diff_id', async () => {
    const good = makeLayer(2000);
    const liar = makeLayer(3000);
    const image = serveRaw(registry, 'library/liar', '1', {
      layers: [good, liar],
      diffIds: [good.diffId, digestOf('something else')],
    });
    await expect(pull('liar:1')).rejects.toMatchObject({
      code: 'DIGEST_MISMATCH',
      message: expect.stringContaining(`layer ${image.layers[1]} unpacks to ${liar.diffId}`),
    });
    await expectNotTagged('library/liar', '1', image.digest);
  });

  it('refuses a config that lists fewer diff_ids than the manifest has layers, fetching no layer', async () => {
    const a = makeLayer(100);
    const b = makeLayer(200);
    const image = serveRaw(registry, 'library/short', '1', { layers: [a, b], diffIds: [a.diffId] });
    await expect(pull('short:1')).rejects.toMatchObject({
      code: 'INVALID_IMAGE',
      message: expect.stringMatching(/has 2 layers, but its config lists 1/),
    });
    for (const layer of image.layers) {
      expect(registry.count(registry.blobPath('library/short', layer))).toBe(0);
    }
    await expectNotTagged('library/short', '1', image.digest);
  });

  it('refuses a layer that is not a tar and tags nothing', async () => {
    const garbage = makeBlob(4096);
    const image = serveRaw(registry, 'library/garbage', '1', {
      layers: [{ bytes: garbage, diffId: digestOf(garbage) }],
    });
    await expect(pull('garbage:1')).rejects.toMatchObject({
      code: 'INVALID_IMAGE',
      message: expect.stringContaining(`layer ${image.layers[0]} is not a valid tar archive`),
    });
    // The bytes are what their digest says (a registry client may want them); no image names them.
    expect((await cache.context.catalog.getBlob(image.layers[0]!))?.diffId).toBeUndefined();
    await expectNotTagged('library/garbage', '1', image.digest);
  });

  it('checks the diff_id of a layer it already holds against each new config', async () => {
    const shared = makeLayer(1500);
    serveRaw(registry, 'library/honest', '1', { layers: [shared] });
    await pull('honest:1');
    const stored = await cache.context.catalog.getBlob(digestOf(shared.bytes));
    expect(stored?.diffId).toBe(shared.diffId);

    const hostile = serveRaw(registry, 'library/reuse', '1', {
      layers: [shared],
      diffIds: [digestOf('not the layer')],
    });
    await expect(pull('reuse:1')).rejects.toMatchObject({ code: 'DIGEST_MISMATCH' });
    // The layer was not fetched again: the recorded diff_id answered.
    expect(registry.count(registry.blobPath('library/reuse', hostile.layers[0]!))).toBe(0);
    await expectNotTagged('library/reuse', '1', hostile.digest);
  });

  it('refuses a stored config named as a layer', async () => {
    const honest = serveRaw(registry, 'library/honest', '1', { layers: [makeLayer(100)] });
    await pull('honest:1');
    const configBytes = (await cache.context.catalog.getBlob(honest.config))!;
    expect(configBytes.diffId).toBeUndefined();
    // The honest config's bytes, listed as a layer whose diff_id is their own digest.
    const raw = await readStored(cache, honest.config);
    const hostile = serveRaw(registry, 'library/confused', '1', {
      layers: [{ bytes: raw, diffId: honest.config }],
    });
    await expect(pull('confused:1')).rejects.toMatchObject({
      code: 'INVALID_IMAGE',
      message: expect.stringContaining('is not a valid tar archive'),
    });
    await expectNotTagged('library/confused', '1', hostile.digest);
  });

  it('pulls uncompressed and gzip layers whose diff_ids match, and records them', async () => {
    const image = await generateImage({
      seed: 'honest-mixed',
      layers: [{ files: [3000], compression: 'none' }, { files: [5000] }],
    });
    for (const blob of image.blobs) registry.addBlob(blob.bytes!);
    registry.addManifest('library/mixed', '1', image.bytes, image.mediaType);
    const result = await pull('mixed:1');
    expect(result.manifest.digest).toBe(image.digest);
    for (const layer of image.layers) {
      expect((await cache.context.catalog.getBlob(layer.digest))?.diffId).toBe(layer.diffId);
    }
    expect(image.layers[0]!.diffId).toBe(image.layers[0]!.digest);
  });
});

async function readStored(cache: Composition, digest: Digest): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of await cache.context.blobs.read(digest)) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}
