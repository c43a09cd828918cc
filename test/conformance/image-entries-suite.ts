import { describe, expect, it } from 'vitest';
import { digestHex, sha256 } from '../../lib/digest.ts';
import { entriesOf } from '../../lib/image-entries.ts';
import type { ImageCatalog } from '../../lib/ports/image-catalog.ts';
import { type Conformance, freshStore } from './harness.ts';
import { addBlobs, commitOf, type ImageFixture, imageFixture } from './image-catalog-suite.ts';

const REPO = 'docker.io/library/alpine';
const OTHER = 'localhost:5000/app';

/** The same image under another manifest digest (as when pushed twice): one config, two entries. */
function sibling(image: ImageFixture, createdAt: number): ImageFixture {
  const raw = new TextEncoder().encode(`${new TextDecoder().decode(image.manifest.raw)}\n`);
  return {
    ...image,
    manifest: { ...image.manifest, raw, digest: sha256(raw), createdAt, lastUsedAt: createdAt },
  };
}

/**
 * Image entries (what requests read instead of whole listings) must always say what the whole
 * listings say: every adapter is checked against entriesOf over listImages, listTags and
 * listDigestRefs after each kind of change.
 */
export const imageEntriesConformance: Conformance<ImageCatalog> = (name, make) => {
  describe(`ImageCatalog entries conformance: ${name}`, () => {
    const catalog = freshStore(make);

    async function expectEntriesMatchListings() {
      const [manifests, tags, refs] = await Promise.all([
        catalog.listImages(),
        catalog.listTags(),
        catalog.listDigestRefs(),
      ]);
      const expected = entriesOf(manifests, tags, refs).map((e) => ({
        ...e,
        manifest: {
          digest: e.manifest.digest,
          blobs: e.manifest.blobs,
          image: e.manifest.image,
          createdAt: e.manifest.createdAt,
        },
      }));
      expect(await catalog.listImageEntries()).toEqual(expected);
      return expected;
    }

    it('lists nothing in an empty catalog and has nothing to backfill', async () => {
      expect(await catalog.listImageEntries()).toEqual([]);
      expect(await catalog.findImageEntries('ab')).toEqual([]);
      expect(await catalog.listRepositoryTags(REPO)).toEqual([]);
      expect(await catalog.backfillImageEntries()).toBe(0);
    });

    it('follows commits, re-tags, untags and deletions, newest first', async () => {
      const a = imageFixture('a', 1_000);
      const b = imageFixture('b', 2_000);
      for (const image of [a, b]) await addBlobs(catalog, image, 1);
      await catalog.commitImage(commitOf(a, 'one', 10));
      await catalog.commitImage({ ...commitOf(b, 'two', 11), digestRef: undefined });
      await catalog.commitImage({
        manifests: [],
        blobs: [],
        tag: {
          repository: OTHER,
          tag: 'x',
          manifest: a.manifest.digest,
          source: a.manifest.digest,
        },
        now: 12,
      });
      const entries = await expectEntriesMatchListings();
      expect(entries.map((e) => e.manifest.digest)).toEqual([b.manifest.digest, a.manifest.digest]);
      expect(entries[1]!.tags).toEqual(
        [
          {
            repository: REPO,
            tag: 'one',
            manifest: a.manifest.digest,
            source: a.manifest.digest,
            updatedAt: 10,
          },
          {
            repository: OTHER,
            tag: 'x',
            manifest: a.manifest.digest,
            source: a.manifest.digest,
            updatedAt: 12,
          },
        ].sort((x, y) => (x.repository < y.repository ? -1 : 1)),
      );

      // The tag moves to b: it leaves a's entry in the same change.
      await catalog.commitImage({ ...commitOf(b, 'one', 20), digestRef: undefined });
      await expectEntriesMatchListings();
      // Revalidation bookkeeping is not part of an entry.
      await catalog.markTagChecked(REPO, 'one', 30);
      await expectEntriesMatchListings();

      await catalog.deleteTag(OTHER, 'x');
      await catalog.deleteDigestRef(REPO, a.manifest.digest);
      const left = await expectEntriesMatchListings();
      expect(left.find((e) => e.manifest.digest === a.manifest.digest)).toMatchObject({
        tags: [],
        digestRefs: [],
      });
      expect(await catalog.deleteManifestIfUnreferenced(a.manifest.digest)).toBe(true);
      expect((await expectEntriesMatchListings()).map((e) => e.manifest.digest)).toEqual([
        b.manifest.digest,
      ]);
    });

    it('keeps a digest ref entry at its first createdAt when the ref moves', async () => {
      const a = imageFixture('a', 1_000);
      const b = imageFixture('b', 2_000);
      for (const image of [a, b]) await addBlobs(catalog, image, 1);
      const index = sha256('some index');
      await catalog.commitImage({
        ...commitOf(a, 'one', 10),
        digestRef: { repository: REPO, digest: index, manifest: a.manifest.digest },
      });
      await catalog.commitImage({
        ...commitOf(b, 'two', 20),
        digestRef: { repository: REPO, digest: index, manifest: b.manifest.digest },
      });
      const entries = await expectEntriesMatchListings();
      expect(entries[0]!.digestRefs).toEqual([
        { repository: REPO, digest: index, manifest: b.manifest.digest, createdAt: 10 },
      ]);
    });

    it('finds images by ID or manifest prefix, with every manifest of the image', async () => {
      const a = imageFixture('a', 1_000);
      const twin = sibling(a, 3_000);
      const b = imageFixture('b', 2_000);
      for (const image of [a, b]) await addBlobs(catalog, image, 1);
      await catalog.commitImage(commitOf(a, 'one', 10));
      await catalog.commitImage({ ...commitOf(twin, 'twin', 11), digestRef: undefined });
      await catalog.commitImage(commitOf(b, 'two', 12));
      const all = await expectEntriesMatchListings();
      const ofA = all.filter((e) => e.manifest.image.configDigest === a.config);
      expect(ofA.map((e) => e.manifest.digest)).toEqual([twin.manifest.digest, a.manifest.digest]);

      const byId = (hex: string) => catalog.findImageEntries(hex);
      expect(await byId(digestHex(a.config))).toEqual(ofA);
      expect(await byId(digestHex(a.config).slice(0, 12))).toEqual(ofA);
      // A manifest digest prefix brings its image's other manifest too.
      expect(await byId(digestHex(twin.manifest.digest).slice(0, 12))).toEqual(ofA);
      expect(await byId(digestHex(b.manifest.digest))).toEqual(
        all.filter((e) => e.manifest.digest === b.manifest.digest),
      );
      const unknown = digestHex(sha256('nothing stored')).slice(0, 16);
      expect(await byId(unknown)).toEqual([]);
    });

    it("lists one repository's tags, by tag", async () => {
      const a = imageFixture('a', 1_000);
      await addBlobs(catalog, a, 1);
      for (const tag of ['b', 'a', 'c']) await catalog.commitImage(commitOf(a, tag, 10));
      await catalog.commitImage({
        manifests: [],
        blobs: [],
        tag: {
          repository: OTHER,
          tag: 'z',
          manifest: a.manifest.digest,
          source: a.manifest.digest,
        },
        now: 11,
      });
      const tags = await catalog.listRepositoryTags(REPO);
      expect(tags.map((t) => t.tag)).toEqual(['a', 'b', 'c']);
      expect(tags).toEqual((await catalog.listTags()).filter((t) => t.repository === REPO));
      expect((await catalog.listRepositoryTags(OTHER)).map((t) => t.tag)).toEqual(['z']);
    });
  });
};
