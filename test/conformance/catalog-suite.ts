import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type Digest, digestHex, sha256 } from '../../lib/digest.ts';
import { BlobNotLiveError, NotFoundError } from '../../lib/errors.ts';
import type { Catalog, ImageCommit, ManifestRecord } from '../../lib/ports/catalog.ts';

export interface CatalogHarness {
  catalog: Catalog;
  cleanup(): Promise<void>;
}

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
const REPO = 'docker.io/library/alpine';

export interface ImageFixture {
  config: Digest;
  layers: Digest[];
  manifest: ManifestRecord;
}

/**
 * An image manifest record with made-up blob digests. The raw bytes are deliberately not
 * canonical JSON (odd spacing, non-ASCII) and sit inside a larger buffer, so an adapter that
 * re-serialises them or stores the whole backing ArrayBuffer is caught.
 */
export function imageFixture(seed: string, createdAt = 1_000): ImageFixture {
  const config = sha256(`${seed}/config`);
  const layers = [sha256(`${seed}/layer-0`), sha256(`${seed}/layer-1`)];
  const json = `{ "schemaVersion":2,  "mediaType":"${OCI_MANIFEST}", "config":{"digest":"${config}"},
    "layers":[${layers.map((d) => `{"digest":"${d}"}`).join(',')}], "annotations":{"é":"ü ${seed}"} }`;
  const padded = new TextEncoder().encode(`xx${json}yy`);
  const raw = padded.subarray(2, padded.length - 2);
  const manifest: ManifestRecord = {
    digest: sha256(raw),
    mediaType: OCI_MANIFEST,
    raw,
    blobs: [config, ...layers],
    children: [],
    image: {
      configDigest: config,
      created: '2024-01-02T03:04:05Z',
      os: 'linux',
      architecture: 'amd64',
      size: 1234,
      labels: { seed },
    },
    createdAt,
    lastUsedAt: createdAt,
  };
  return { config, layers, manifest };
}

export function indexFixture(children: ManifestRecord[], createdAt = 1_000): ManifestRecord {
  const raw = new TextEncoder().encode(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_INDEX,
      manifests: children.map((c) => ({ digest: c.digest, mediaType: c.mediaType })),
    }),
  );
  return {
    digest: sha256(raw),
    mediaType: OCI_INDEX,
    raw,
    blobs: [],
    children: children.map((c) => c.digest),
    createdAt,
    lastUsedAt: createdAt,
  };
}

/** Records every blob of the fixture as live, the way a pull does after storing the bytes. */
export async function addBlobs(catalog: Catalog, image: ImageFixture, now: number): Promise<void> {
  for (const digest of image.manifest.blobs) {
    expect(await catalog.addBlob({ digest, size: 100 }, now)).toBe('live');
  }
}

export function commitOf(image: ImageFixture, tag: string, now: number): ImageCommit {
  return {
    manifests: [image.manifest],
    blobs: image.manifest.blobs,
    tag: { repository: REPO, tag, manifest: image.manifest.digest, source: image.manifest.digest },
    digestRef: { repository: REPO, digest: image.manifest.digest, manifest: image.manifest.digest },
    now,
  };
}

/**
 * The behaviour every Catalog adapter must show (SQLite, DynamoDB, ...). `makeCatalog` gives a
 * fresh, empty catalog per test.
 */
export function catalogConformance(name: string, makeCatalog: () => Promise<CatalogHarness>): void {
  describe(`Catalog conformance: ${name}`, () => {
    let harness: CatalogHarness;
    let catalog: Catalog;
    beforeEach(async () => {
      harness = await makeCatalog();
      catalog = harness.catalog;
    });
    afterEach(async () => {
      await harness.cleanup();
    });

    it('adds a blob as live at generation 1 and bumps the generation on every touch', async () => {
      const digest = sha256('blob');
      expect(await catalog.getBlob(digest)).toBeUndefined();
      expect(await catalog.touchBlob(digest, 5)).toBe('absent');
      expect(await catalog.getBlob(digest)).toBeUndefined();

      expect(await catalog.addBlob({ digest, size: 42 }, 10)).toBe('live');
      expect(await catalog.getBlob(digest)).toEqual({
        digest,
        size: 42,
        state: 'live',
        generation: 1,
        touchedAt: 10,
      });
      expect(await catalog.touchBlob(digest, 20)).toBe('live');
      // A second add touches and fills the unpacked size that was unknown so far.
      expect(await catalog.addBlob({ digest, size: 42, unpackedSize: 99 }, 30)).toBe('live');
      expect(await catalog.getBlob(digest)).toEqual({
        digest,
        size: 42,
        unpackedSize: 99,
        state: 'live',
        generation: 3,
        touchedAt: 30,
      });
      // A known unpacked size is not overwritten.
      await catalog.addBlob({ digest, size: 42, unpackedSize: 7 }, 40);
      expect(await catalog.getBlob(digest)).toMatchObject({ unpackedSize: 99, generation: 4 });
    });

    it('counts every one of many concurrent adds and touches', async () => {
      const digest = sha256('contended');
      const adds = await Promise.all(
        Array.from({ length: 10 }, (_, i) => catalog.addBlob({ digest, size: 1 }, i)),
      );
      expect(adds).toEqual(Array(10).fill('live'));
      await Promise.all(Array.from({ length: 10 }, (_, i) => catalog.touchBlob(digest, 100 + i)));
      expect((await catalog.getBlob(digest))?.generation).toBe(20);
    });

    it('commits manifests byte for byte, the tag, the digest ref and touches', async () => {
      const image = imageFixture('a', 500);
      await addBlobs(catalog, image, 100);
      await catalog.commitImage({
        ...commitOf(image, 'latest', 200),
        tag: {
          repository: REPO,
          tag: 'latest',
          manifest: image.manifest.digest,
          source: sha256('index'),
          platform: 'linux/amd64',
        },
      });
      const stored = await catalog.getManifest(image.manifest.digest);
      expect(Buffer.from(stored!.raw).equals(Buffer.from(image.manifest.raw))).toBe(true);
      expect(sha256(stored!.raw)).toBe(image.manifest.digest);
      expect({ ...stored, raw: undefined }).toEqual({
        ...image.manifest,
        raw: undefined,
        createdAt: 500,
        lastUsedAt: 200,
      });
      expect(await catalog.getTag(REPO, 'latest')).toEqual({
        repository: REPO,
        tag: 'latest',
        manifest: image.manifest.digest,
        source: sha256('index'),
        platform: 'linux/amd64',
        updatedAt: 200,
        checkedAt: 200,
      });
      expect(await catalog.listTags()).toHaveLength(1);
      const ref = { repository: REPO, digest: image.manifest.digest };
      expect(await catalog.getDigestRef(REPO, image.manifest.digest)).toEqual({
        ...ref,
        manifest: image.manifest.digest,
        createdAt: 200,
      });
      for (const digest of image.manifest.blobs) {
        expect(await catalog.getBlob(digest)).toMatchObject({ generation: 2, touchedAt: 200 });
      }
    });

    it.each([
      ['listed in blobs', false],
      ['only named by the manifest', true],
    ])('writes nothing when a blob %s was never added', async (_, omitFromBlobs) => {
      const image = imageFixture('b');
      const [config, first, missing] = image.manifest.blobs as [Digest, Digest, Digest];
      await catalog.addBlob({ digest: config, size: 1 }, 10);
      await catalog.addBlob({ digest: first, size: 1 }, 10);
      const commit = commitOf(image, 'latest', 50);
      if (omitFromBlobs) commit.blobs = [config, first];
      const failure = catalog.commitImage(commit);
      await expect(failure).rejects.toBeInstanceOf(BlobNotLiveError);
      await expect(failure).rejects.toMatchObject({ digests: [missing] });
      expect(await catalog.getTag(REPO, 'latest')).toBeUndefined();
      expect(await catalog.listTags()).toEqual([]);
      expect(await catalog.getManifest(image.manifest.digest)).toBeUndefined();
      expect(await catalog.listImages()).toEqual([]);
      expect(await catalog.getDigestRef(REPO, image.manifest.digest)).toBeUndefined();
      for (const digest of [config, first]) {
        expect(await catalog.getBlob(digest)).toMatchObject({ generation: 1, touchedAt: 10 });
      }
      expect(await catalog.getBlob(missing)).toBeUndefined();
    });

    it('keeps an existing manifest as first stored and bumps its lastUsedAt', async () => {
      const image = imageFixture('c', 100);
      await addBlobs(catalog, image, 100);
      await catalog.commitImage(commitOf(image, '1', 200));
      const again = { ...image.manifest, createdAt: 999, mediaType: 'changed' };
      await catalog.commitImage({ ...commitOf(image, '2', 300), manifests: [again] });
      expect(await catalog.getManifest(image.manifest.digest)).toMatchObject({
        mediaType: OCI_MANIFEST,
        createdAt: 100,
        lastUsedAt: 300,
      });
      expect((await catalog.getDigestRef(REPO, image.manifest.digest))?.createdAt).toBe(200);
      expect((await catalog.listTags()).map((t) => t.tag)).toEqual(['1', '2']);
    });

    it('re-points a tag, and tags a stored image without restating its manifest', async () => {
      const a = imageFixture('d');
      const b = imageFixture('e');
      await addBlobs(catalog, a, 10);
      await addBlobs(catalog, b, 10);
      await catalog.commitImage(commitOf(a, 'latest', 20));
      await catalog.commitImage(commitOf(b, 'latest', 30));
      expect(await catalog.getTag(REPO, 'latest')).toMatchObject({
        manifest: b.manifest.digest,
        updatedAt: 30,
      });
      // `docker tag`: no manifests, no blobs listed; the catalog still checks a's blobs.
      const digest = a.manifest.digest;
      await catalog.commitImage({
        manifests: [],
        blobs: [],
        tag: { repository: 'docker.io/team/copy', tag: 'v1', manifest: digest, source: digest },
        now: 40,
      });
      expect(await catalog.getTag('docker.io/team/copy', 'v1')).toMatchObject({
        manifest: digest,
        updatedAt: 40,
      });
      expect(await catalog.getBlob(a.config)).toMatchObject({ generation: 3, touchedAt: 40 });
      expect(await catalog.listTags()).toHaveLength(2);
    });

    it('refuses a tag on a manifest that is not stored', async () => {
      const image = imageFixture('f');
      const digest = image.manifest.digest;
      await expect(
        catalog.commitImage({
          manifests: [],
          blobs: [],
          tag: { repository: REPO, tag: 'x', manifest: digest, source: digest },
          now: 1,
        }),
      ).rejects.toBeInstanceOf(NotFoundError);
      expect(await catalog.listTags()).toEqual([]);
    });

    it('stores an index with its image, lists and finds only images', async () => {
      const image = imageFixture('g');
      const index = indexFixture([image.manifest], 1);
      await addBlobs(catalog, image, 10);
      await catalog.commitImage({
        manifests: [index, image.manifest],
        blobs: image.manifest.blobs,
        tag: {
          repository: REPO,
          tag: 'multi',
          manifest: image.manifest.digest,
          source: index.digest,
        },
        digestRef: { repository: REPO, digest: index.digest, manifest: image.manifest.digest },
        now: 20,
      });
      expect(await catalog.getManifest(index.digest)).toMatchObject({
        children: [image.manifest.digest],
        blobs: [],
      });
      expect((await catalog.getManifest(index.digest))?.image).toBeUndefined();
      expect((await catalog.listImages()).map((m) => m.digest)).toEqual([image.manifest.digest]);
      expect(await catalog.findImages(digestHex(index.digest).slice(0, 12))).toEqual([]);
      expect(await catalog.getDigestRef(REPO, index.digest)).toMatchObject({
        manifest: image.manifest.digest,
      });
      expect(await catalog.listDigestRefs()).toHaveLength(1);
    });

    it('finds images by config digest (image ID) or manifest digest prefix', async () => {
      const images = ['h', 'i', 'j'].map((seed) => imageFixture(seed));
      for (const image of images) {
        await addBlobs(catalog, image, 10);
        await catalog.commitImage(commitOf(image, image.manifest.image!.labels.seed!, 20));
      }
      const [h] = images as [ImageFixture];
      const digests = async (prefix: string) =>
        (await catalog.findImages(prefix)).map((m) => m.digest);
      expect(await digests(digestHex(h.config).slice(0, 12))).toEqual([h.manifest.digest]);
      expect(await digests(digestHex(h.config))).toEqual([h.manifest.digest]);
      expect(await digests(digestHex(h.manifest.digest).slice(0, 6))).toEqual([h.manifest.digest]);
      // A prefix of a layer digest names no image.
      expect(await digests(digestHex(h.layers[0]!).slice(0, 12))).toEqual([]);
      expect(await digests('')).toEqual([]);
      expect(await digests('not-hex')).toEqual([]);
      expect((await catalog.listImages()).map((m) => m.digest).sort()).toEqual(
        images.map((i) => i.manifest.digest).sort(),
      );
    });

    it('touches manifests and marks tags checked without other changes', async () => {
      const image = imageFixture('k', 5);
      await addBlobs(catalog, image, 10);
      await catalog.commitImage(commitOf(image, 'latest', 20));
      await catalog.touchManifest(image.manifest.digest, 70);
      expect(await catalog.getManifest(image.manifest.digest)).toMatchObject({
        createdAt: 5,
        lastUsedAt: 70,
      });
      await catalog.markTagChecked(REPO, 'latest', 80);
      expect(await catalog.getTag(REPO, 'latest')).toMatchObject({ updatedAt: 20, checkedAt: 80 });
      // Unknown names are no-ops, never upserts.
      await catalog.markTagChecked(REPO, 'unknown', 90);
      await catalog.touchManifest(sha256('unknown'), 90);
      expect(await catalog.getTag(REPO, 'unknown')).toBeUndefined();
      expect(await catalog.getManifest(sha256('unknown'))).toBeUndefined();
      expect(await catalog.getDigestRef(REPO, sha256('unknown'))).toBeUndefined();
    });

    it('stays consistent under concurrent commits sharing blobs and a tag', async () => {
      const images = Array.from({ length: 8 }, (_, i) => imageFixture(`m${i}`));
      const shared = sha256('shared-base-layer');
      await catalog.addBlob({ digest: shared, size: 1 }, 1);
      await Promise.all(images.map((image) => addBlobs(catalog, image, 1)));
      await Promise.all(
        images.flatMap((image, i) => [
          catalog.commitImage({ ...commitOf(image, `v${i}`, 10 + i), blobs: [shared] }),
          catalog.commitImage({ ...commitOf(image, 'latest', 10 + i), blobs: [shared] }),
        ]),
      );
      const tags = await catalog.listTags();
      expect(tags).toHaveLength(images.length + 1);
      for (const tag of tags) expect(await catalog.getManifest(tag.manifest)).toBeDefined();
      expect(images.map((i) => i.manifest.digest)).toContain(
        (await catalog.getTag(REPO, 'latest'))?.manifest,
      );
      expect((await catalog.getBlob(shared))?.generation).toBe(1 + 2 * images.length);
      expect(await catalog.listImages()).toHaveLength(images.length);
    });
  });
}
