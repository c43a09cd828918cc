import { describe, expect, it } from 'vitest';
import { sha256 } from '../../lib/digest.ts';
import type { ImageCatalog } from '../../lib/ports/image-catalog.ts';
import { type Conformance, freshStore } from './harness.ts';
import {
  addBlobs,
  commitOf,
  imageFixture,
  indexedCommit,
  indexFixture,
} from './image-catalog-suite.ts';

/**
 * Pull counts and last use per manifest (the dashboard's image listing): a pull's commit or a
 * pull's touch counts one, a save's touch and a load's commit only mark the manifest used.
 */
export const imageUsageConformance: Conformance<ImageCatalog> = (name, make) => {
  describe(`ImageCatalog usage conformance: ${name}`, () => {
    const catalog = freshStore(make);

    it('counts the pull that stored an image and every pull touch after it', async () => {
      const image = imageFixture('usage-a', 5);
      const digest = image.manifest.digest;
      await addBlobs(catalog, image, 10);
      await catalog.commitImage({ ...commitOf(image, 'latest', 20), pulled: digest });
      expect(await catalog.manifestUsage([digest])).toEqual(
        new Map([[digest, { lastUsedAt: 20, pulls: 1 }]]),
      );
      await catalog.touchManifest(digest, 30, 'pull');
      await catalog.touchManifest(digest, 40, 'pull');
      // A save reads the image: used, not pulled.
      await catalog.touchManifest(digest, 50);
      await catalog.touchManifest(digest, 60, 'read');
      expect((await catalog.manifestUsage([digest])).get(digest)).toEqual({
        lastUsedAt: 60,
        pulls: 3,
      });
    });

    it('leaves the count alone for commits that are not pulls (load, tag)', async () => {
      const image = imageFixture('usage-b', 5);
      const digest = image.manifest.digest;
      await addBlobs(catalog, image, 10);
      await catalog.commitImage(commitOf(image, 'loaded', 20));
      await catalog.commitImage({ ...commitOf(image, 'again', 30), digestRef: undefined });
      expect((await catalog.manifestUsage([digest])).get(digest)).toEqual({
        lastUsedAt: 30,
        pulls: 0,
      });
      // A later pull of the stored image counts on the existing record.
      await catalog.commitImage({ ...commitOf(image, 'pulled', 40), pulled: digest });
      expect((await catalog.manifestUsage([digest])).get(digest)?.pulls).toBe(1);
    });

    it('counts the image, not the index, of a multi-platform pull', async () => {
      const image = imageFixture('usage-c', 5);
      const index = indexFixture([image.manifest], 5);
      await addBlobs(catalog, image, 10);
      await catalog.commitImage({
        ...indexedCommit(image, index, 20),
        pulled: image.manifest.digest,
      });
      const usage = await catalog.manifestUsage([image.manifest.digest, index.digest]);
      expect(usage.get(image.manifest.digest)?.pulls).toBe(1);
      expect(usage.get(index.digest)?.pulls).toBe(0);
    });

    it('counts a pull once on the large commit path', async () => {
      // Over one transaction's worth of blobs: DynamoDB stores the manifest first, names it last.
      const image = imageFixture('usage-big', 5);
      const many = Array.from({ length: 120 }, (_, i) => sha256(`usage-big/${i}`));
      image.manifest = { ...image.manifest, blobs: [...image.manifest.blobs, ...many] };
      await addBlobs(catalog, image, 10);
      const digest = image.manifest.digest;
      await catalog.commitImage({ ...commitOf(image, 'big', 20), pulled: digest });
      expect((await catalog.manifestUsage([digest])).get(digest)).toEqual({
        lastUsedAt: 20,
        pulls: 1,
      });
    });

    it('counts every one of many concurrent pull touches', async () => {
      const image = imageFixture('usage-d', 5);
      const digest = image.manifest.digest;
      await addBlobs(catalog, image, 10);
      await catalog.commitImage(commitOf(image, 'latest', 20));
      await Promise.all(
        Array.from({ length: 12 }, (_, i) => catalog.touchManifest(digest, 30 + i, 'pull')),
      );
      expect((await catalog.manifestUsage([digest])).get(digest)?.pulls).toBe(12);
    });

    it('answers only stored manifests, and nothing for an empty or unknown list', async () => {
      const stored = imageFixture('usage-e', 5);
      await addBlobs(catalog, stored, 10);
      await catalog.commitImage(commitOf(stored, 'latest', 20));
      const unknown = sha256('usage/unknown');
      // Touching an unknown digest creates nothing.
      await catalog.touchManifest(unknown, 30, 'pull');
      const usage = await catalog.manifestUsage([stored.manifest.digest, unknown]);
      expect([...usage.keys()]).toEqual([stored.manifest.digest]);
      expect(await catalog.manifestUsage([])).toEqual(new Map());
      expect(await catalog.getManifest(unknown)).toBeUndefined();
    });
  });
};
