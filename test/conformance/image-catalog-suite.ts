import { describe, expect, it } from 'vitest';
import { type Digest, digestHex, sha256 } from '../../lib/digest.ts';
import { BlobNotLiveError, NotFoundError } from '../../lib/errors.ts';
import { resolveImage } from '../../lib/images.ts';
import type { ImageCatalog, ImageCommit, ManifestRecord } from '../../lib/ports/image-catalog.ts';
import { type Conformance, freshStore } from './harness.ts';

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
export async function addBlobs(
  catalog: ImageCatalog,
  image: ImageFixture,
  now: number,
): Promise<void> {
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

/** Commits an index with one of its images, tagged `multi` (source: the index). */
export function indexedCommit(
  image: ImageFixture,
  index: ManifestRecord,
  now: number,
): ImageCommit {
  return {
    manifests: [index, image.manifest],
    blobs: image.manifest.blobs,
    tag: { repository: REPO, tag: 'multi', manifest: image.manifest.digest, source: index.digest },
    now,
  };
}

/**
 * The behaviour every ImageCatalog adapter must show (SQLite, DynamoDB, ...). `make` gives a
 * fresh, empty catalog per test.
 */
export const imageCatalogConformance: Conformance<ImageCatalog> = (name, make) => {
  describe(`ImageCatalog conformance: ${name}`, () => {
    const catalog = freshStore(make);

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
      // The diff_id is filled the same way: once known, it stays.
      expect((await catalog.getBlob(digest))?.diffId).toBeUndefined();
      await catalog.addBlob({ digest, size: 42, diffId: sha256('tar') }, 50);
      await catalog.addBlob({ digest, size: 42, diffId: sha256('other'), unpackedSize: 5 }, 60);
      expect(await catalog.getBlob(digest)).toEqual({
        digest,
        size: 42,
        unpackedSize: 99,
        diffId: sha256('tar'),
        state: 'live',
        generation: 6,
        touchedAt: 60,
      });
    });

    it('fills the layer facts of a live record only, and never creates one', async () => {
      const digest = sha256('facts');
      expect(await catalog.fillLayerFacts(digest, { diffId: sha256('tar') })).toBe(false);
      expect(await catalog.getBlob(digest)).toBeUndefined();
      await catalog.addBlob({ digest, size: 3 }, 10);
      expect(await catalog.fillLayerFacts(digest, { diffId: sha256('tar'), unpackedSize: 9 })).toBe(
        true,
      );
      expect(await catalog.fillLayerFacts(digest, { diffId: sha256('other') })).toBe(true);
      expect(await catalog.getBlob(digest)).toEqual({
        digest,
        size: 3,
        unpackedSize: 9,
        diffId: sha256('tar'),
        state: 'live',
        generation: 1,
        touchedAt: 10,
      });
      const { generation } = (await catalog.getBlob(digest))!;
      expect(await catalog.beginBlobDeletion(digest, generation)).toBe(true);
      expect(await catalog.fillLayerFacts(digest, { unpackedSize: 1 })).toBe(false);
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
        ...indexedCommit(image, index, 20),
        digestRef: { repository: REPO, digest: index.digest, manifest: image.manifest.digest },
      });
      expect(await catalog.getManifest(index.digest)).toMatchObject({
        children: [image.manifest.digest],
        blobs: [],
      });
      expect((await catalog.getManifest(index.digest))?.image).toBeUndefined();
      expect((await catalog.listImages()).map((m) => m.digest)).toEqual([image.manifest.digest]);
      await expect(
        resolveImage(catalog, digestHex(index.digest).slice(0, 12)),
      ).rejects.toBeInstanceOf(NotFoundError);
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
      // What `docker image inspect <id>` resolves through: listImages, matched by prefix.
      const digests = async (name: string) =>
        (await resolveImage(catalog, name)).manifests.map((m) => m.digest);
      const none = (name: string) =>
        expect(resolveImage(catalog, name)).rejects.toBeInstanceOf(NotFoundError);
      expect(await digests(digestHex(h.config).slice(0, 12))).toEqual([h.manifest.digest]);
      expect(await digests(digestHex(h.config))).toEqual([h.manifest.digest]);
      // Docker takes 12 hex digits at the least; a manifest digest prefix names the image too.
      expect(await digests(digestHex(h.manifest.digest).slice(0, 12))).toEqual([h.manifest.digest]);
      // A prefix of a layer digest names no image.
      await none(digestHex(h.layers[0]!).slice(0, 12));
      await none('');
      await none('not-hex');
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
    describe('removal', () => {
      it('lists every manifest, indexes and untagged ones included', async () => {
        const image = imageFixture('n');
        const other = imageFixture('o');
        const index = indexFixture([image.manifest]);
        await addBlobs(catalog, image, 1);
        await addBlobs(catalog, other, 1);
        await catalog.commitImage(indexedCommit(image, index, 2));
        await catalog.commitImage({ manifests: [other.manifest], blobs: [], now: 3 });
        const listed = await catalog.listManifests();
        expect(listed.map((m) => m.digest).sort()).toEqual(
          [index.digest, image.manifest.digest, other.manifest.digest].sort(),
        );
        const storedIndex = listed.find((m) => m.digest === index.digest)!;
        expect(storedIndex.children).toEqual([image.manifest.digest]);
        expect(Buffer.from(storedIndex.raw).equals(Buffer.from(index.raw))).toBe(true);
        expect(listed.find((m) => m.digest === other.manifest.digest)?.blobs).toEqual(
          other.manifest.blobs,
        );
      });

      it('deletes tags and digest refs and answers what was removed', async () => {
        const image = imageFixture('p');
        await addBlobs(catalog, image, 1);
        await catalog.commitImage(commitOf(image, 'latest', 5));
        const digest = image.manifest.digest;
        expect(await catalog.deleteTag(REPO, 'latest')).toEqual({
          repository: REPO,
          tag: 'latest',
          manifest: digest,
          source: digest,
          updatedAt: 5,
          checkedAt: 5,
        });
        expect(await catalog.deleteTag(REPO, 'latest')).toBeUndefined();
        expect(await catalog.getTag(REPO, 'latest')).toBeUndefined();
        expect(await catalog.deleteDigestRef(REPO, digest)).toEqual({
          repository: REPO,
          digest,
          manifest: digest,
          createdAt: 5,
        });
        expect(await catalog.deleteDigestRef(REPO, digest)).toBeUndefined();
        expect(await catalog.listDigestRefs()).toEqual([]);
        // The manifest itself stays until it is deleted on its own.
        expect(await catalog.getManifest(digest)).toBeDefined();
      });

      it('deletes a manifest only while no tag, digest ref or pin refers to it', async () => {
        const image = imageFixture('q');
        const index = indexFixture([image.manifest]);
        const digest = image.manifest.digest;
        await addBlobs(catalog, image, 1);
        const base = { manifests: [index, image.manifest], blobs: [], now: 2 };
        await catalog.commitImage(base);
        // Each kind of reference alone keeps both the image manifest and, where named, the index.
        const cases: [string, () => Promise<unknown>, () => Promise<unknown>, Digest[]][] = [
          [
            'tag (manifest)',
            () => catalog.commitImage({ ...base, tag: { ...tagOn(digest), source: digest } }),
            () => catalog.deleteTag(REPO, 't'),
            [digest],
          ],
          [
            'tag (source)',
            () => catalog.commitImage({ ...base, tag: { ...tagOn(digest), source: index.digest } }),
            () => catalog.deleteTag(REPO, 't'),
            [digest, index.digest],
          ],
          [
            'digest ref',
            () =>
              catalog.commitImage({
                ...base,
                digestRef: { repository: REPO, digest: index.digest, manifest: digest },
              }),
            () => catalog.deleteDigestRef(REPO, index.digest),
            [digest, index.digest],
          ],
          [
            'pin',
            () => catalog.putPin({ name: 'sha256:x', manifest: digest, note: '', createdAt: 1 }),
            () => catalog.deletePin('sha256:x'),
            [digest],
          ],
          [
            'expired pin',
            () =>
              catalog.putPin({
                name: 'old',
                manifest: digest,
                note: '',
                createdAt: 1,
                expiresAt: 2,
              }),
            () => catalog.deletePin('old'),
            [digest],
          ],
        ];
        for (const [name, add, remove, held] of cases) {
          await add();
          for (const d of held) {
            expect(await catalog.deleteManifestIfUnreferenced(d), `${name}: ${d}`).toBe(false);
            expect(await catalog.getManifest(d), name).toBeDefined();
          }
          await remove();
        }
        expect(await catalog.deleteManifestIfUnreferenced(index.digest)).toBe(true);
        expect(await catalog.deleteManifestIfUnreferenced(digest)).toBe(true);
        expect(await catalog.deleteManifestIfUnreferenced(digest)).toBe(false);
        expect(await catalog.listManifests()).toEqual([]);
        expect(await catalog.listImages()).toEqual([]);
        // Blob records are the collector's business, not the removal's.
        expect(await catalog.getBlob(image.config)).toMatchObject({ state: 'live' });
      });

      it('answers which blobs a stored manifest still names, through removals', async () => {
        const a = imageFixture('users-a');
        const shared = a.layers[0]!;
        // b repeats the shared layer twice (images may list a layer more than once).
        const b = imageFixture('users-b');
        b.manifest = { ...b.manifest, blobs: [...b.manifest.blobs, shared, shared] };
        // Over one transaction's worth of blobs: the adapters' large commit path.
        const big = imageFixture('users-big');
        const many = Array.from({ length: 120 }, (_, i) => sha256(`users-big/${i}`));
        big.manifest = { ...big.manifest, blobs: [...big.manifest.blobs, ...many] };
        for (const image of [a, b, big]) await addBlobs(catalog, image, 1);
        const index = indexFixture([a.manifest]);
        const stranger = sha256('users-never-stored');
        const everything = [...a.manifest.blobs, ...b.manifest.blobs, ...big.manifest.blobs];
        const named = () => catalog.referencedBlobs([...everything, stranger, index.digest]);

        expect(await named()).toEqual(new Set());
        await catalog.commitImage({ manifests: [index, a.manifest], blobs: [], now: 2 });
        await catalog.commitImage({ manifests: [b.manifest], blobs: [], now: 2 });
        await catalog.commitImage({ manifests: [big.manifest], blobs: [], now: 2 });
        expect(await named()).toEqual(new Set(everything));

        expect(await catalog.deleteManifestIfUnreferenced(big.manifest.digest)).toBe(true);
        expect(await named()).toEqual(new Set([...a.manifest.blobs, ...b.manifest.blobs]));
        // The shared layer stays named while either image is stored; the index names no blob.
        expect(await catalog.deleteManifestIfUnreferenced(a.manifest.digest)).toBe(true);
        expect(await catalog.deleteManifestIfUnreferenced(index.digest)).toBe(true);
        expect(await named()).toEqual(new Set(b.manifest.blobs));
        expect(await catalog.deleteManifestIfUnreferenced(b.manifest.digest)).toBe(true);
        expect(await named()).toEqual(new Set());
        // Stored again after its removal: named again.
        await catalog.commitImage({ manifests: [a.manifest], blobs: [], now: 3 });
        expect(await named()).toEqual(new Set(a.manifest.blobs));
      });

      it('lets a re-tag after a removal store the manifest again', async () => {
        const image = imageFixture('r');
        await addBlobs(catalog, image, 1);
        await catalog.commitImage(commitOf(image, 'latest', 2));
        await catalog.deleteTag(REPO, 'latest');
        await catalog.deleteDigestRef(REPO, image.manifest.digest);
        expect(await catalog.deleteManifestIfUnreferenced(image.manifest.digest)).toBe(true);
        await catalog.commitImage(commitOf(image, 'latest', 3));
        expect(await catalog.getManifest(image.manifest.digest)).toMatchObject({
          lastUsedAt: 3,
        });
      });
    });

    describe('pins', () => {
      it('upserts by name, lists by name and deletes', async () => {
        const a = sha256('pinned-a');
        const b = sha256('pinned-b');
        expect(await catalog.listPins()).toEqual([]);
        await catalog.putPin({
          name: 'docker.io/library/nginx:1',
          manifest: a,
          note: 'ci',
          createdAt: 1,
        });
        await catalog.putPin({
          name: 'docker.io/library/alpine:3',
          manifest: b,
          note: 'release',
          createdAt: 2,
          expiresAt: 100,
        });
        expect(await catalog.listPins()).toEqual([
          {
            name: 'docker.io/library/alpine:3',
            manifest: b,
            note: 'release',
            createdAt: 2,
            expiresAt: 100,
          },
          { name: 'docker.io/library/nginx:1', manifest: a, note: 'ci', createdAt: 1 },
        ]);
        await catalog.putPin({
          name: 'docker.io/library/alpine:3',
          manifest: a,
          note: 'moved',
          createdAt: 3,
        });
        const moved = {
          name: 'docker.io/library/alpine:3',
          manifest: a,
          note: 'moved',
          createdAt: 3,
        };
        expect((await catalog.listPins())[0]).toEqual(moved);
        expect(await catalog.deletePin('docker.io/library/alpine:3')).toEqual(moved);
        expect(await catalog.deletePin('docker.io/library/alpine:3')).toBeUndefined();
        expect((await catalog.listPins()).map((p) => p.name)).toEqual([
          'docker.io/library/nginx:1',
        ]);
      });
    });

    describe('garbage collection transitions', () => {
      it('lists blob records with their state and generation', async () => {
        await catalog.addBlob({ digest: sha256('b'), size: 2, unpackedSize: 3 }, 1);
        await catalog.addBlob({ digest: sha256('a'), size: 1 }, 1);
        await catalog.touchBlob(sha256('a'), 4);
        const listed = await catalog.listBlobs();
        expect(listed.map((b) => b.digest).sort()).toEqual([sha256('a'), sha256('b')].sort());
        expect(listed.find((b) => b.digest === sha256('b'))).toEqual({
          digest: sha256('b'),
          size: 2,
          unpackedSize: 3,
          state: 'live',
          generation: 1,
          touchedAt: 1,
        });
        expect(listed.find((b) => b.digest === sha256('a'))).toMatchObject({
          generation: 2,
          touchedAt: 4,
        });
      });

      it('loses to a writer that touched the blob after the generation was observed', async () => {
        const digest = sha256('raced');
        await catalog.addBlob({ digest, size: 1 }, 1);
        const observed = (await catalog.getBlob(digest))!.generation;
        expect(await catalog.touchBlob(digest, 2)).toBe('live');
        expect(await catalog.beginBlobDeletion(digest, observed)).toBe(false);
        expect(await catalog.getBlob(digest)).toMatchObject({ state: 'live' });
        expect(await catalog.beginBlobDeletion(sha256('absent'), 1)).toBe(false);
        expect(await catalog.getBlob(sha256('absent'))).toBeUndefined();
      });

      it('treats a deleting blob as absent for writers until the deletion finished', async () => {
        const image = imageFixture('gc');
        await addBlobs(catalog, image, 1);
        const victim = image.layers[1]!;
        expect(await catalog.beginBlobDeletion(victim, 1)).toBe(true);
        // Only one collector can win the transition.
        expect(await catalog.beginBlobDeletion(victim, 1)).toBe(false);

        expect(await catalog.touchBlob(victim, 5)).toBe('deleting');
        expect(await catalog.addBlob({ digest: victim, size: 100 }, 5)).toBe('deleting');
        const failure = catalog.commitImage(commitOf(image, 'latest', 5));
        await expect(failure).rejects.toBeInstanceOf(BlobNotLiveError);
        await expect(failure).rejects.toMatchObject({ digests: [victim] });
        expect(await catalog.listTags()).toEqual([]);
        expect(await catalog.getManifest(image.manifest.digest)).toBeUndefined();
        expect(await catalog.getBlob(image.config)).toMatchObject({ generation: 1, touchedAt: 1 });
        expect(await catalog.getBlob(victim)).toMatchObject({ state: 'deleting', generation: 1 });

        await catalog.finishBlobDeletion(victim);
        expect(await catalog.getBlob(victim)).toBeUndefined();
        expect(await catalog.touchBlob(victim, 6)).toBe('absent');
        expect(await catalog.addBlob({ digest: victim, size: 100 }, 7)).toBe('live');
        expect(await catalog.getBlob(victim)).toMatchObject({ state: 'live', touchedAt: 7 });
        await catalog.commitImage(commitOf(image, 'latest', 8));
        expect(await catalog.getTag(REPO, 'latest')).toBeDefined();
      });

      it('never repeats an old generation when a deleted blob is recorded again', async () => {
        // A collector may hold a snapshot from the record's previous life. If a re-created
        // record counted up through the same generations, that collector's conditional
        // transition would win against a writer that re-added and committed the blob (ABA).
        const digest = sha256('reborn');
        await catalog.addBlob({ digest, size: 1 }, 1);
        await catalog.touchBlob(digest, 2);
        await catalog.touchBlob(digest, 3);
        const first = await catalog.getBlob(digest);
        const observed = [first!.generation - 2, first!.generation - 1, first!.generation];
        expect(await catalog.beginBlobDeletion(digest, first!.generation)).toBe(true);
        await catalog.finishBlobDeletion(digest);

        expect(await catalog.addBlob({ digest, size: 1 }, 4)).toBe('live');
        for (let touch = 0; touch < 4; touch++) {
          for (const stale of observed) {
            expect(await catalog.beginBlobDeletion(digest, stale)).toBe(false);
          }
          await catalog.touchBlob(digest, 5 + touch);
        }
        expect(await catalog.getBlob(digest)).toMatchObject({ state: 'live' });
        // The same for a record that was an orphan claim.
        const orphan = sha256('reborn-orphan');
        await catalog.addBlob({ digest: orphan, size: 1 }, 1);
        const orphanGeneration = (await catalog.getBlob(orphan))!.generation;
        await catalog.beginBlobDeletion(orphan, orphanGeneration);
        await catalog.finishBlobDeletion(orphan);
        expect(await catalog.claimOrphanBlob(orphan, 1, 2)).toBe(true);
        await catalog.finishBlobDeletion(orphan);
        await catalog.addBlob({ digest: orphan, size: 1 }, 3);
        expect(await catalog.beginBlobDeletion(orphan, orphanGeneration)).toBe(false);
      });

      it('never drops a live record when finishing a deletion', async () => {
        const digest = sha256('live');
        await catalog.addBlob({ digest, size: 1 }, 1);
        await catalog.finishBlobDeletion(digest);
        expect(await catalog.getBlob(digest)).toMatchObject({ state: 'live' });
        await catalog.finishBlobDeletion(sha256('never-recorded'));
      });

      it('claims an orphan file only while no record exists', async () => {
        const orphan = sha256('orphan');
        const recorded = sha256('recorded');
        await catalog.addBlob({ digest: recorded, size: 1 }, 1);
        expect(await catalog.claimOrphanBlob(recorded, 1, 2)).toBe(false);
        expect(await catalog.getBlob(recorded)).toMatchObject({ state: 'live', generation: 1 });

        expect(await catalog.claimOrphanBlob(orphan, 9, 3)).toBe(true);
        expect(await catalog.getBlob(orphan)).toMatchObject({
          digest: orphan,
          size: 9,
          state: 'deleting',
          touchedAt: 3,
        });
        expect(await catalog.claimOrphanBlob(orphan, 9, 4)).toBe(false);
        // A writer that finished writing the same bytes now waits for the collector.
        expect(await catalog.addBlob({ digest: orphan, size: 9 }, 5)).toBe('deleting');
        expect(await catalog.touchBlob(orphan, 5)).toBe('deleting');
        await catalog.finishBlobDeletion(orphan);
        expect(await catalog.getBlob(orphan)).toBeUndefined();
        expect(await catalog.addBlob({ digest: orphan, size: 9 }, 6)).toBe('live');
      });

      it('lets exactly one of many concurrent collectors win a transition', async () => {
        const digest = sha256('contested');
        await catalog.addBlob({ digest, size: 1 }, 1);
        const wins = await Promise.all(
          Array.from({ length: 8 }, () => catalog.beginBlobDeletion(digest, 1)),
        );
        expect(wins.filter(Boolean)).toHaveLength(1);
        const claims = await Promise.all(
          Array.from({ length: 8 }, () => catalog.claimOrphanBlob(sha256('file'), 1, 1)),
        );
        expect(claims.filter(Boolean)).toHaveLength(1);
      });
    });
  });
};

function tagOn(manifest: Digest) {
  return { repository: REPO, tag: 't', manifest, source: manifest };
}
