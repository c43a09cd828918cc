import type { Digest } from '../../digest.ts';
import { entriesOf, matchingEntries } from '../../image-entries.ts';
import type { RepositoryName } from '../../model.ts';
import type {
  BlobRecord,
  DigestRefRecord,
  ImageCatalog,
  ImageCommit,
  ImageEntry,
  ManifestRecord,
  ManifestUsage,
  ManifestUse,
  PinRecord,
  TagRecord,
} from '../../ports/image-catalog.ts';
import { blobsWithUsers, blobUsersReady, reconcileBlobUsers } from './blob-users.ts';
import {
  addBlob,
  beginBlobDeletion,
  claimOrphanBlob,
  fillLayerFacts,
  finishBlobDeletion,
  getBlob,
  listBlobs,
  touchBlob,
} from './blobs.ts';
import { commitImage } from './commit.ts';
import {
  backfillImageEntries,
  entriesReady,
  findImageEntries,
  listImageEntries,
} from './image-entries.ts';
import { av, compare, num, optNum, pinItem, str, toDigestRef, toPin, toTag } from './items.ts';
import { assembleManifest, groupChunks, readManifest, readManifests } from './manifests.ts';
import { deleteManifestIfUnreferenced, writeReferrer } from './references.ts';
import { IMAGES_PK, keys, PINS_PK } from './schema.ts';
import type { Table } from './table.ts';

/**
 * Blobs, manifests, tags, digest refs and pins in the DynamoDB table (layout: schema.ts). Every
 * multi-item change is one transaction, and every read the GC protocol depends on is strongly
 * consistent.
 */
export class DynamoImageCatalog implements ImageCatalog {
  readonly #table: Table;
  /** Whether the entries marker was seen (schema.ts); never goes back to false. */
  #ready = false;
  /** Whether the blob users marker was seen (blob-users.ts); never goes back to false. */
  #usersReady = false;

  constructor(table: Table) {
    this.#table = table;
  }

  // --- blobs (dynamo/blobs.ts)

  getBlob(digest: Digest): Promise<BlobRecord | undefined> {
    return getBlob(this.#table, digest);
  }

  touchBlob(digest: Digest, now: number): Promise<'live' | 'deleting' | 'absent'> {
    return touchBlob(this.#table, digest, now);
  }

  addBlob(
    blob: { digest: Digest; size: number; unpackedSize?: number; diffId?: Digest },
    now: number,
  ): Promise<'live' | 'deleting'> {
    return addBlob(this.#table, blob, now);
  }

  fillLayerFacts(
    digest: Digest,
    facts: { unpackedSize?: number; diffId?: Digest },
  ): Promise<boolean> {
    return fillLayerFacts(this.#table, digest, facts);
  }

  listBlobs(): Promise<BlobRecord[]> {
    return listBlobs(this.#table);
  }

  beginBlobDeletion(digest: Digest, expectedGeneration: number): Promise<boolean> {
    return beginBlobDeletion(this.#table, digest, expectedGeneration);
  }

  finishBlobDeletion(digest: Digest): Promise<void> {
    return finishBlobDeletion(this.#table, digest);
  }

  claimOrphanBlob(digest: Digest, size: number, now: number): Promise<boolean> {
    return claimOrphanBlob(this.#table, digest, size, now);
  }

  // --- images

  async commitImage(commit: ImageCommit): Promise<void> {
    await commitImage(this.#table, commit);
  }

  async getManifest(digest: Digest): Promise<ManifestRecord | undefined> {
    return readManifest(this.#table, digest);
  }

  async listImages(): Promise<ManifestRecord[]> {
    return this.#images(await this.#lookups('DIGEST#'));
  }

  async #lookups(prefix: string): Promise<Digest[]> {
    const items = await this.#table.query({
      KeyConditionExpression: 'pk = :pk AND begins_with(sk, :prefix)',
      ExpressionAttributeValues: { ':pk': av.s(IMAGES_PK), ':prefix': av.s(prefix) },
    });
    return items.map((item) => str(item, 'manifest') as Digest);
  }

  async #images(digests: Digest[]): Promise<ManifestRecord[]> {
    const records = await readManifests(this.#table, digests);
    return records
      .filter((m) => m.image !== undefined)
      .sort((a, b) => b.createdAt - a.createdAt || compare(a.digest, b.digest));
  }

  // --- image entries (dynamo/image-entries.ts): Queries of the IMAGES partition

  async listImageEntries(): Promise<ImageEntry[]> {
    if (await this.#entriesReady()) return listImageEntries(this.#table);
    return this.#entriesByScan();
  }

  async findImageEntries(hexPrefix: string): Promise<ImageEntry[]> {
    if (await this.#entriesReady()) return findImageEntries(this.#table, hexPrefix);
    return matchingEntries(await this.#entriesByScan(), hexPrefix);
  }

  async listRepositoryTags(repository: RepositoryName): Promise<TagRecord[]> {
    const items = await this.#table.query({
      KeyConditionExpression: 'pk = :pk AND begins_with(sk, :prefix)',
      ExpressionAttributeValues: {
        ':pk': av.s(keys.tag(repository, '').pk),
        ':prefix': av.s('TAG#'),
      },
    });
    return items.map(toTag).sort((a, b) => compare(a.tag, b.tag));
  }

  async backfillImageEntries(): Promise<number> {
    const written = await backfillImageEntries(this.#table);
    this.#ready = true;
    const users = await reconcileBlobUsers(this.#table, Date.now());
    return written + users.written;
  }

  /** Blob users (blob-users.ts) once the index is complete; marking from every manifest before. */
  async referencedBlobs(blobs: Iterable<Digest>): Promise<Set<Digest>> {
    this.#usersReady ||= await blobUsersReady(this.#table);
    if (this.#usersReady) return blobsWithUsers(this.#table, blobs);
    const wanted = new Set(blobs);
    const used = new Set<Digest>();
    for (const manifest of await this.listManifests()) {
      for (const blob of manifest.blobs) if (wanted.has(blob)) used.add(blob);
    }
    return used;
  }

  /** Once the marker was seen it stays: entries, once complete, are kept complete by writers. */
  async #entriesReady(): Promise<boolean> {
    this.#ready ||= await entriesReady(this.#table);
    return this.#ready;
  }

  /** Until the backfill finished: entries from whole listings (Scans), as before entries. */
  async #entriesByScan(): Promise<ImageEntry[]> {
    const [manifests, tags, refs] = await Promise.all([
      this.listImages(),
      this.listTags(),
      this.listDigestRefs(),
    ]);
    return entriesOf(manifests, tags, refs).map(({ manifest, tags, digestRefs }) => ({
      manifest: {
        digest: manifest.digest,
        blobs: manifest.blobs,
        image: manifest.image,
        createdAt: manifest.createdAt,
      },
      tags,
      digestRefs,
    }));
  }

  async touchManifest(digest: Digest, now: number, use: ManifestUse = 'read'): Promise<void> {
    // Unknown digests are no-ops, never upserts. A pull's count rides on the same write.
    const pull = use === 'pull';
    await this.#table.update(
      keys.manifest(digest),
      pull ? 'SET #lastUsedAt = :now ADD #pulls :one' : 'SET #lastUsedAt = :now',
      {
        ConditionExpression: 'attribute_exists(pk)',
        ExpressionAttributeNames: {
          '#lastUsedAt': 'lastUsedAt',
          ...(pull && { '#pulls': 'pulls' }),
        },
        ExpressionAttributeValues: { ':now': av.n(now), ...(pull && { ':one': av.n(1) }) },
      },
    );
  }

  async manifestUsage(digests: readonly Digest[]): Promise<Map<Digest, ManifestUsage>> {
    const items = await this.#table.batchGet(digests.map(keys.manifest), [
      'pk',
      'sk',
      'digest',
      'lastUsedAt',
      'pulls',
    ]);
    return new Map(
      [...items.values()].map((item) => [
        str(item, 'digest') as Digest,
        { lastUsedAt: num(item, 'lastUsedAt'), pulls: optNum(item, 'pulls') ?? 0 },
      ]),
    );
  }

  async listManifests(): Promise<ManifestRecord[]> {
    const items = await this.#table.scanKinds(['manifest', 'raw']);
    const chunks = groupChunks(items.filter((i) => i.kind?.S === 'raw'));
    const records: ManifestRecord[] = [];
    for (const item of items) {
      if (item.kind?.S !== 'manifest') continue;
      // Chunks on another Scan page or segment than expected are fetched by assembleManifest.
      const record =
        (await assembleManifest(this.#table, item, chunks)) ??
        (await readManifest(this.#table, str(item, 'digest') as Digest));
      if (record) records.push(record);
    }
    return records.sort((a, b) => compare(a.digest, b.digest));
  }

  async deleteManifestIfUnreferenced(digest: Digest): Promise<boolean> {
    return deleteManifestIfUnreferenced(this.#table, digest);
  }

  // --- tags and digest refs

  async getTag(repository: RepositoryName, tag: string): Promise<TagRecord | undefined> {
    const item = await this.#table.get(keys.tag(repository, tag));
    return item && toTag(item);
  }

  async listTags(): Promise<TagRecord[]> {
    const tags = (await this.#table.scanKinds(['tag'])).map(toTag);
    return tags.sort((a, b) => compare(a.repository, b.repository) || compare(a.tag, b.tag));
  }

  async markTagChecked(repository: RepositoryName, tag: string, now: number): Promise<void> {
    await this.#table.update(keys.tag(repository, tag), 'SET #checkedAt = :now', {
      ConditionExpression: 'attribute_exists(pk)',
      ExpressionAttributeNames: { '#checkedAt': 'checkedAt' },
      ExpressionAttributeValues: { ':now': av.n(now) },
    });
  }

  async deleteTag(repository: RepositoryName, tag: string): Promise<TagRecord | undefined> {
    const old = await writeReferrer(this.#table, keys.tag(repository, tag), undefined);
    return old && toTag(old);
  }

  async getDigestRef(
    repository: RepositoryName,
    digest: Digest,
  ): Promise<DigestRefRecord | undefined> {
    const item = await this.#table.get(keys.digestRef(repository, digest));
    return item && toDigestRef(item);
  }

  async listDigestRefs(): Promise<DigestRefRecord[]> {
    const refs = (await this.#table.scanKinds(['ref'])).map(toDigestRef);
    return refs.sort((a, b) => compare(a.repository, b.repository) || compare(a.digest, b.digest));
  }

  async deleteDigestRef(
    repository: RepositoryName,
    digest: Digest,
  ): Promise<DigestRefRecord | undefined> {
    const old = await writeReferrer(this.#table, keys.digestRef(repository, digest), undefined);
    return old && toDigestRef(old);
  }

  // --- pins

  async putPin(pin: PinRecord): Promise<void> {
    await writeReferrer(this.#table, keys.pin(pin.name), pinItem(pin));
  }

  async deletePin(name: string): Promise<PinRecord | undefined> {
    const old = await writeReferrer(this.#table, keys.pin(name), undefined);
    return old && toPin(old);
  }

  async listPins(): Promise<PinRecord[]> {
    const items = await this.#table.query({
      KeyConditionExpression: 'pk = :pk',
      ExpressionAttributeValues: { ':pk': av.s(PINS_PK) },
    });
    return items.map(toPin);
  }
}
