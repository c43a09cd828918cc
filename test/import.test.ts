import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FsBlobStore } from '../lib/adapters/fs-blob-store.ts';
import { SqliteCatalog } from '../lib/adapters/sqlite-catalog.ts';
import { type Digest, sha256 } from '../lib/digest.ts';
import { BlobNotLiveError, DigestMismatchError, NotFoundError } from '../lib/errors.ts';
import { CollectorClaims, collectBlobs } from '../lib/gc.ts';
import { parseImageConfig } from '../lib/image-config.ts';
import type { EnsureBlobOptions, ImageSource, PresentBlob } from '../lib/import/image-source.ts';
import { type ImageName, type ImporterDeps, importImage } from '../lib/import/importer.ts';
import { parseManifest } from '../lib/manifest.ts';
import type { Descriptor } from '../lib/model.ts';
import type { ImageCommit } from '../lib/ports/catalog.ts';
import {
  type GeneratedBlob,
  type GeneratedImage,
  generateImage,
  openBlob,
} from './support/image-factory.ts';
import { type TempDir, tempDir } from './support/tmp.ts';
import { ManualClock } from './support/upstream-harness.ts';

const REPO = 'docker.io/library/imported';

/**
 * The importer against the real adapters (SQLite catalog + blob folder). Its source is the
 * smallest honest one: a generated image whose bytes it writes to the store when asked, as a
 * registry source's fetch would. The collector runs for real, slipped in before a commit.
 */
describe('importImage', () => {
  let dir: TempDir;
  let catalog: SqliteCatalog;
  let blobs: FsBlobStore;
  let clock: ManualClock;
  let image: GeneratedImage;

  beforeEach(async () => {
    dir = await tempDir('import');
    catalog = new SqliteCatalog(dir.file('catalog.db'));
    blobs = new FsBlobStore(dir.path);
    clock = new ManualClock(Date.now());
    image = await generateImage({ seed: 'import', layers: 2 });
  });

  afterEach(async () => {
    catalog.close();
    await dir.cleanup();
  });

  /** Writes a blob and records it live, unless it is live already (then it only touches it). */
  async function store(blob: GeneratedBlob, facts: Omit<PresentBlob, 'existed'> = {}) {
    if ((await catalog.touchBlob(blob.digest, clock.now())) === 'live') return { existed: true };
    await blobs.write(openBlob(blob), { digest: blob.digest, size: blob.size });
    const state = await catalog.addBlob({ digest: blob.digest, size: blob.size }, clock.now());
    if (state !== 'live') throw new BlobNotLiveError([blob.digest]);
    return { existed: false, ...facts };
  }

  /** The generated image as an ImageSource; `asked` lists every ensureBlob call. */
  function sourceOf(generated: GeneratedImage, fail?: (d: Descriptor) => Error | undefined) {
    const parsed = parseManifest(generated.bytes, generated.mediaType);
    if (parsed.kind !== 'image') throw new Error('expected an image manifest');
    const asked: { digest: Digest; again: boolean }[] = [];
    const source: ImageSource = {
      manifest: { digest: generated.digest, mediaType: generated.mediaType, raw: generated.bytes },
      sourceDigest: generated.digest,
      config: parsed.config,
      layers: parsed.layers,
      async ensureBlob(descriptor: Descriptor, options: EnsureBlobOptions) {
        asked.push({ digest: descriptor.digest, again: options.again });
        const failure = fail?.(descriptor);
        if (failure) throw failure;
        if (!options.isLayer) return store(generated.configBlob);
        const layer = generated.layers.find((l) => l.digest === descriptor.digest)!;
        return store(layer, { unpackedSize: layer.fileBytes, diffId: layer.diffId });
      },
      async readConfig() {
        try {
          const chunks: Buffer[] = [];
          for await (const c of await blobs.read(parsed.config.digest)) chunks.push(c as Buffer);
          return parseImageConfig(Buffer.concat(chunks));
        } catch (error) {
          if (error instanceof NotFoundError) throw new BlobNotLiveError([parsed.config.digest]);
          throw error;
        }
      },
    };
    return { source, asked };
  }

  /** The catalog with `before` run ahead of each commit; counts the commits asked for. */
  function interposed(before: (commit: ImageCommit, attempt: number) => Promise<void>) {
    let attempts = 0;
    const deps: ImporterDeps = {
      clock,
      catalog: {
        commitImage: async (commit) => {
          await before(commit, ++attempts);
          return catalog.commitImage(commit);
        },
      },
    };
    return { deps, attempts: () => attempts };
  }

  /** Runs the collector on `digests` as prune would: they are referenced by nothing yet. */
  async function collect(digests: Digest[]) {
    const report = await collectBlobs(
      { catalog, gcReports: catalog, blobs, clock, gcClaims: new CollectorClaims() },
      [...digests],
    );
    expect(report.deleted.blobs).toBe(digests.length);
  }

  const tagged: ImageName[] = [{ repository: REPO, tag: '1', digestRef: true }];

  async function expectNothingNamed() {
    expect(await catalog.getTag(REPO, '1')).toBeUndefined();
    expect(await catalog.getDigestRef(REPO, image.digest)).toBeUndefined();
    expect(await catalog.getManifest(image.digest)).toBeUndefined();
  }

  it('reports what it stored and what it found, and commits records, summary and names', async () => {
    const [first, second] = image.layers;
    await store(first!);
    const { source } = sourceOf(image);

    const report = await importImage({ catalog, clock }, source, tagged, { concurrency: 2 });

    expect(report).toMatchObject({
      manifest: image.digest,
      imageId: image.configBlob.digest,
      tags: [`${REPO}:1`],
      blobs: { stored: [image.configBlob.digest, second!.digest], present: [first!.digest] },
      bytes: {
        stored: image.configBlob.size + second!.size,
        total: image.configBlob.size + first!.size + second!.size,
      },
    });
    const stored = await catalog.getManifest(image.digest);
    expect(stored?.blobs).toEqual([image.configBlob.digest, first!.digest, second!.digest]);
    expect(stored?.image).toMatchObject({
      configDigest: image.configBlob.digest,
      os: 'linux',
      architecture: 'amd64',
      created: image.config.created,
      // The first layer was found without facts: its blob size stands in for its files.
      size: first!.size + second!.fileBytes,
      labels: image.config.config.Labels,
    });
    expect(await catalog.getTag(REPO, '1')).toMatchObject({
      manifest: image.digest,
      source: image.digest,
    });
    expect(await catalog.getDigestRef(REPO, image.digest)).toMatchObject({
      manifest: image.digest,
    });
  });

  it('commits each name on its own, and an image without names untagged', async () => {
    const { source } = sourceOf(image);
    const names: ImageName[] = [
      { repository: REPO, tag: 'a', digestRef: true },
      { repository: REPO, tag: 'b', digestRef: false },
    ];
    const { deps, attempts } = interposed(async () => {});
    const report = await importImage(deps, source, names, { concurrency: 1 });
    expect(report.tags).toEqual([`${REPO}:a`, `${REPO}:b`]);
    expect(attempts()).toBe(2);
    expect((await catalog.getTag(REPO, 'b'))?.manifest).toBe(image.digest);

    const other = await generateImage({ seed: 'untagged', layers: 1 });
    const untagged = await importImage(deps, sourceOf(other).source, [], { concurrency: 1 });
    expect(untagged.tags).toEqual([]);
    expect(attempts()).toBe(3);
    expect((await catalog.getManifest(other.digest))?.image?.configDigest).toBe(
      other.configBlob.digest,
    );
  });

  it('makes a blob the collector took before the commit present again, and commits', async () => {
    const layer = image.layers[1]!.digest;
    const { source, asked } = sourceOf(image);
    const { deps, attempts } = interposed(async (_commit, attempt) => {
      if (attempt === 1) await collect([layer]);
    });

    const report = await importImage(deps, source, tagged, { concurrency: 2 });

    expect(attempts()).toBe(2);
    // Only the blob the catalog named is asked for again, and as a retry.
    expect(asked.filter((a) => a.again)).toEqual([{ digest: layer, again: true }]);
    expect((await catalog.getBlob(layer))?.state).toBe('live');
    expect(await blobs.stat(layer)).toBeDefined();
    expect((await catalog.getTag(REPO, '1'))?.manifest).toBe(image.digest);
    // Stored by the first attempt and again by the second: stored, not found.
    expect(report.blobs.stored).toContain(layer);
    expect(report.blobs.present).toEqual([]);
  });

  it('fetches the config again when the collector takes it between ensure and read', async () => {
    const config = image.configBlob.digest;
    const { source, asked } = sourceOf(image);
    const read = source.readConfig.bind(source);
    let reads = 0;
    source.readConfig = async () => {
      if (reads++ === 0) await collect([config]);
      return read();
    };

    await importImage({ catalog, clock }, source, tagged, { concurrency: 1 });

    expect(reads).toBe(2);
    expect(asked.filter((a) => a.digest === config).map((a) => a.again)).toEqual([false, true]);
    expect((await catalog.getTag(REPO, '1'))?.manifest).toBe(image.digest);
  });

  it('gives up after three refused commits and names nothing', async () => {
    const layer = image.layers[0]!.digest;
    const { source } = sourceOf(image);
    const { deps, attempts } = interposed(async () => collect([layer]));

    await expect(importImage(deps, source, tagged, { concurrency: 1 })).rejects.toBeInstanceOf(
      BlobNotLiveError,
    );
    expect(attempts()).toBe(3);
    await expectNothingNamed();
  });

  it('changes nothing when the source fails: no commit, no manifest, no name', async () => {
    const broken = image.layers[1]!.digest;
    const { source } = sourceOf(image, (d) =>
      d.digest === broken ? new Error('registry went away') : undefined,
    );
    const { deps, attempts } = interposed(async () => {});

    await expect(importImage(deps, source, tagged, { concurrency: 1 })).rejects.toThrow(
      'registry went away',
    );
    expect(attempts()).toBe(0);
    await expectNothingNamed();
  });

  it('refuses a layer that does not unpack to its diff_id, and names nothing', async () => {
    const { source } = sourceOf(image);
    const ensure = source.ensureBlob.bind(source);
    const lie = sha256('not the tar the config names');
    source.ensureBlob = async (d, options) => ({ ...(await ensure(d, options)), diffId: lie });

    await expect(
      importImage({ catalog, clock }, source, tagged, { concurrency: 1 }),
    ).rejects.toThrow(DigestMismatchError);
    await expectNothingNamed();
  });
});
