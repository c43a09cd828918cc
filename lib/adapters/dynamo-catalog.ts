import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { type AwsSdkSettings, clientLocation } from '../config/aws-sdk.ts';
import type { Digest } from '../digest.ts';
import { ConflictError } from '../errors.ts';
import type { RepositoryName } from '../model.ts';
import type {
  BlobRecord,
  Catalog,
  DigestRefRecord,
  GcReport,
  ImageCommit,
  JobEnd,
  JobProgress,
  JobRecord,
  LeaseTerms,
  ManifestRecord,
  NewJob,
  PinRecord,
  TagRecord,
  TokenRecord,
} from '../ports/catalog.ts';
import { commitImage, touchExpression } from './dynamo/commit.ts';
import {
  av,
  gcReportItem,
  type Item,
  keyItem,
  num,
  optStr,
  pinItem,
  str,
  toBlob,
  toDigestRef,
  toGcReport,
  tokenItem,
  toPin,
  toTag,
  toToken,
} from './dynamo/items.ts';
import { claimJob, createOrJoinJob, finishJob, getJob, recordJobProgress } from './dynamo/jobs.ts';
import { assembleManifest, groupChunks, readManifest, readManifests } from './dynamo/manifests.ts';
import { deleteManifestIfUnreferenced, writeReferrer } from './dynamo/references.ts';
import { RequestCounter } from './dynamo/request-counter.ts';
import {
  createTable,
  GC_REPORT_PREFIX,
  GC_REPORTS_KEPT,
  GC_REPORTS_PK,
  IMAGES_PK,
  keys,
  PINS_PK,
  TOKENS_PK,
  TTL_ATTRIBUTE,
} from './dynamo/schema.ts';
import { Table } from './dynamo/table.ts';

export { RequestCounter } from './dynamo/request-counter.ts';

export interface DynamoCatalogOptions {
  /** The catalog owns the client from here on: close() destroys it. */
  client: DynamoDBClient;
  tableName: string;
  /** Parallel Scan segments for whole-type listings (GC over many blobs). Default 4. */
  scanSegments?: number;
}

const DEFAULT_SCAN_SEGMENTS = 4;
/** How long a deleted blob's tombstone (its last generation) is kept: 30 days. */
const TOMBSTONE_TTL_S = 30 * 24 * 3600;
const BLOB_NAMES = {
  '#kind': 'kind',
  '#state': 'state',
  '#generation': 'generation',
  '#ttl': TTL_ATTRIBUTE,
};
/** Attempts per request when the environment does not say (AWS_MAX_ATTEMPTS): rides out throttling. */
const DEFAULT_MAX_ATTEMPTS = 8;

/**
 * The catalog in one DynamoDB table. Layout and access patterns: dynamo/schema.ts. Every blob
 * state change is one conditional write (the SQLite adapter's statements, one for one), every
 * multi-item change one transaction, and every read the GC protocol depends on is strongly
 * consistent. Vendor errors stop in dynamo/table.ts; condition failures come back as answers.
 */
export class DynamoCatalog implements Catalog {
  /** DynamoDB requests sent by this catalog, per operation: what benchmarks print. */
  readonly requests: RequestCounter;
  readonly #table: Table;

  constructor(options: DynamoCatalogOptions) {
    this.#table = new Table(
      options.client,
      options.tableName,
      options.scanSegments ?? DEFAULT_SCAN_SEGMENTS,
    );
    this.requests = RequestCounter.attach(options.client);
  }

  /**
   * A client from the SDK's standard settings (AWS_ENDPOINT_URL_DYNAMODB for emulators), with
   * 8 attempts unless AWS_MAX_ATTEMPTS says otherwise, so throttling is ridden out.
   */
  static clientFor(sdk: AwsSdkSettings): DynamoDBClient {
    return new DynamoDBClient({
      ...clientLocation(sdk, 'dynamodb'),
      ...(!sdk.sdkReads.maxAttempts && { maxAttempts: DEFAULT_MAX_ATTEMPTS }),
    });
  }

  /** Creates the table if missing (on-demand, TTL); only for `--create-resources`. */
  async createTable(): Promise<void> {
    await createTable(this.#table.client, this.#table.name);
  }

  close(): void {
    this.#table.client.destroy();
  }

  // --- blobs: each transition one conditional write

  async getBlob(digest: Digest): Promise<BlobRecord | undefined> {
    const item = await this.#table.get(keys.blob(digest));
    return item && item.state?.S !== 'gone' ? toBlob(item) : undefined;
  }

  async touchBlob(digest: Digest, now: number): Promise<'live' | 'deleting' | 'absent'> {
    const { UpdateExpression, ...expression } = touchExpression(now);
    const outcome = await this.#table.update(keys.blob(digest), UpdateExpression, expression);
    if (outcome.ok) return 'live';
    // The failed condition returns the record as it was: deleting means the collector holds it.
    return outcome.old?.state?.S === 'deleting' ? 'deleting' : 'absent';
  }

  async addBlob(
    blob: { digest: Digest; size: number; unpackedSize?: number; diffId?: Digest },
    now: number,
  ): Promise<'live' | 'deleting'> {
    // One write instead of put-then-touch: creates the live record (ADD starts generation at 1,
    // or continues a tombstone's count), or touches a live one and fills a missing unpackedSize
    // or diffId; a deleting one fails the condition.
    const facts = layerFactValues(blob);
    const fill = facts.map(([name]) => `, #${name} = if_not_exists(#${name}, :${name})`).join('');
    const outcome = await this.#table.update(
      keys.blob(blob.digest),
      `SET #kind = :kind, #digest = :digest, #size = :size, #state = :live, #touchedAt = :now${fill}
       REMOVE #ttl
       ADD #generation :one`,
      {
        ConditionExpression: 'attribute_not_exists(pk) OR #state IN (:live, :gone)',
        ExpressionAttributeNames: {
          ...BLOB_NAMES,
          '#digest': 'digest',
          '#size': 'size',
          '#touchedAt': 'touchedAt',
          ...Object.fromEntries(facts.map(([name]) => [`#${name}`, name])),
        },
        ExpressionAttributeValues: {
          ':kind': av.s('blob'),
          ':digest': av.s(blob.digest),
          ':size': av.n(blob.size),
          ':live': av.s('live'),
          ':gone': av.s('gone'),
          ':now': av.n(now),
          ':one': av.n(1),
          ...Object.fromEntries(facts.map(([name, value]) => [`:${name}`, value])),
        },
      },
    );
    return outcome.ok ? 'live' : 'deleting';
  }

  async fillLayerFacts(
    digest: Digest,
    facts: { unpackedSize?: number; diffId?: Digest },
  ): Promise<boolean> {
    const known = layerFactValues(facts);
    if (known.length === 0) return (await this.getBlob(digest))?.state === 'live';
    const outcome = await this.#table.update(
      keys.blob(digest),
      `SET ${known.map(([name]) => `#${name} = if_not_exists(#${name}, :${name})`).join(', ')}`,
      {
        ConditionExpression: '#state = :live',
        ExpressionAttributeNames: {
          '#state': 'state',
          ...Object.fromEntries(known.map(([name]) => [`#${name}`, name])),
        },
        ExpressionAttributeValues: {
          ':live': av.s('live'),
          ...Object.fromEntries(known.map(([name, value]) => [`:${name}`, value])),
        },
      },
    );
    return outcome.ok;
  }

  async listBlobs(): Promise<BlobRecord[]> {
    // Tombstones have their own kind: the Scan filter drops them before they are sent.
    const records = (await this.#table.scanKinds(['blob'])).map(toBlob);
    return records.sort((a, b) => compare(a.digest, b.digest));
  }

  async beginBlobDeletion(digest: Digest, expectedGeneration: number): Promise<boolean> {
    const outcome = await this.#table.update(keys.blob(digest), 'SET #state = :deleting', {
      ConditionExpression: '#state = :live AND #generation = :generation',
      ExpressionAttributeNames: { '#state': 'state', '#generation': 'generation' },
      ExpressionAttributeValues: {
        ':deleting': av.s('deleting'),
        ':live': av.s('live'),
        ':generation': av.n(expectedGeneration),
      },
    });
    return outcome.ok;
  }

  /**
   * deleting -> gone. The record stays as a tombstone keeping its generation, so a blob recorded
   * again counts on from there: a collector still holding a snapshot of the old life can never
   * match a new generation (ABA). DynamoDB's TTL removes tombstones after TOMBSTONE_TTL_S, far
   * longer than any collector holds a snapshot. A live record is never touched here.
   */
  async finishBlobDeletion(digest: Digest): Promise<void> {
    await this.#table.update(keys.blob(digest), 'SET #state = :gone, #kind = :tomb, #ttl = :ttl', {
      ConditionExpression: '#state = :deleting',
      ExpressionAttributeNames: { '#state': 'state', '#kind': 'kind', '#ttl': TTL_ATTRIBUTE },
      ExpressionAttributeValues: {
        ':deleting': av.s('deleting'),
        ':gone': av.s('gone'),
        ':tomb': av.s('blob-tombstone'),
        ':ttl': av.n(Date.now() / 1000 + TOMBSTONE_TTL_S),
      },
    });
  }

  async claimOrphanBlob(digest: Digest, size: number, now: number): Promise<boolean> {
    const outcome = await this.#table.update(
      keys.blob(digest),
      `SET #kind = :kind, #digest = :digest, #size = :size, #state = :deleting, #touchedAt = :now
       REMOVE #ttl
       ADD #generation :one`,
      {
        ConditionExpression: 'attribute_not_exists(pk) OR #state = :gone',
        ExpressionAttributeNames: {
          ...BLOB_NAMES,
          '#digest': 'digest',
          '#size': 'size',
          '#touchedAt': 'touchedAt',
        },
        ExpressionAttributeValues: {
          ':kind': av.s('blob'),
          ':digest': av.s(digest),
          ':size': av.n(size),
          ':deleting': av.s('deleting'),
          ':gone': av.s('gone'),
          ':now': av.n(now),
          ':one': av.n(1),
        },
      },
    );
    return outcome.ok;
  }

  // --- images

  async commitImage(commit: ImageCommit): Promise<void> {
    await commitImage(this.#table, commit);
  }

  async getManifest(digest: Digest): Promise<ManifestRecord | undefined> {
    return readManifest(this.#table, digest);
  }

  async findImages(hexPrefix: string): Promise<ManifestRecord[]> {
    // Anything but 1-64 lowercase hex matches nothing: an empty prefix must not mean "all".
    if (!/^[a-f0-9]{1,64}$/.test(hexPrefix)) return [];
    const [byConfig, byDigest] = await Promise.all(
      [`CONFIG#${hexPrefix}`, `DIGEST#${hexPrefix}`].map((prefix) => this.#lookups(prefix)),
    );
    return this.#images([...byConfig!, ...byDigest!]);
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

  async touchManifest(digest: Digest, now: number): Promise<void> {
    // Unknown digests are no-ops, never upserts.
    await this.#table.update(keys.manifest(digest), 'SET #lastUsedAt = :now', {
      ConditionExpression: 'attribute_exists(pk)',
      ExpressionAttributeNames: { '#lastUsedAt': 'lastUsedAt' },
      ExpressionAttributeValues: { ':now': av.n(now) },
    });
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

  // --- GC reports

  async putGcReport(report: GcReport): Promise<void> {
    // A table-wide sequence orders reports from any process; re-storing an id makes it newest.
    const sequence = await this.#table.update(
      keys.gcSequence(),
      'ADD #seq :one',
      {
        ExpressionAttributeNames: { '#seq': 'seq' },
        ExpressionAttributeValues: { ':one': av.n(1) },
      },
      'UPDATED_NEW',
    );
    if (!sequence.ok || !sequence.attributes) throw new Error('GC report sequence not updated');
    const seq = num(sequence.attributes, 'seq');
    await this.#table.put(gcReportItem(report, seq));
    const stored = await this.#reportItems(['pk', 'sk', 'id']);
    const stale: Item[] = [];
    let kept = 0;
    for (const item of stored) {
      const mine = item.sk?.S === keys.gcReport(seq).sk;
      if (!mine && optStr(item, 'id') === report.id) stale.push(item);
      else if (++kept > GC_REPORTS_KEPT) stale.push(item);
    }
    await this.#table.batchWrite(
      stale.map((item) => ({
        DeleteRequest: { Key: keyItem({ pk: str(item, 'pk'), sk: str(item, 'sk') }) },
      })),
    );
  }

  async listGcReports(limit: number): Promise<GcReport[]> {
    const count = Math.max(0, Math.trunc(limit));
    if (count === 0) return [];
    const items = await this.#reportItems(undefined, Math.min(count, GC_REPORTS_KEPT));
    return items.slice(0, count).map(toGcReport);
  }

  // --- API tokens: one item each in the TOKENS partition, keyed by the token's hash

  async putToken(token: TokenRecord): Promise<void> {
    const outcome = await this.#table.put(tokenItem(token), {
      ConditionExpression: 'attribute_not_exists(pk)',
    });
    if (!outcome.ok) throw new ConflictError(`a token with id ${token.id} already exists`);
  }

  async getTokenByHash(hash: string): Promise<TokenRecord | undefined> {
    const item = await this.#table.get(keys.token(hash));
    return item && toToken(item);
  }

  async listTokens(): Promise<TokenRecord[]> {
    const items = await this.#table.query({
      KeyConditionExpression: 'pk = :pk',
      ExpressionAttributeValues: { ':pk': av.s(TOKENS_PK) },
    });
    return items.map(toToken).sort((a, b) => compare(a.name, b.name) || compare(a.id, b.id));
  }

  async deleteToken(id: string): Promise<TokenRecord | undefined> {
    // A team has a handful of tokens: finding the id in the partition is one small Query.
    const found = (await this.listTokens()).find((t) => t.id === id);
    if (!found) return undefined;
    const outcome = await this.#table.delete(keys.token(found.hash), {
      ConditionExpression: 'attribute_exists(pk)',
    });
    return outcome.ok && outcome.attributes ? toToken(outcome.attributes) : undefined;
  }

  async touchToken(hash: string, now: number): Promise<void> {
    // Conditional, so a use racing a revoke cannot write the token back as a bare item.
    await this.#table.update(keys.token(hash), 'SET #lastUsedAt = :now', {
      ConditionExpression: 'attribute_exists(pk)',
      ExpressionAttributeNames: { '#lastUsedAt': 'lastUsedAt' },
      ExpressionAttributeValues: { ':now': av.n(now) },
    });
  }

  // --- jobs (dynamo/jobs.ts)

  createOrJoinJob(job: NewJob): Promise<{ job: JobRecord; created: boolean }> {
    return createOrJoinJob(this.#table, job);
  }

  getJob(id: string): Promise<JobRecord | undefined> {
    return getJob(this.#table, id);
  }

  claimJob(id: string, lease: LeaseTerms): Promise<JobRecord | undefined> {
    return claimJob(this.#table, id, lease);
  }

  recordJobProgress(id: string, lease: LeaseTerms, progress: JobProgress): Promise<boolean> {
    return recordJobProgress(this.#table, id, lease, progress);
  }

  finishJob(id: string, owner: string, end: JobEnd): Promise<boolean> {
    return finishJob(this.#table, id, owner, end);
  }

  /** Newest first. */
  async #reportItems(projection?: string[], limit?: number): Promise<Item[]> {
    const names = projection && Object.fromEntries(projection.map((p, i) => [`#p${i}`, p]));
    return this.#table.query(
      {
        KeyConditionExpression: 'pk = :pk AND begins_with(sk, :prefix)',
        ExpressionAttributeValues: {
          ':pk': av.s(GC_REPORTS_PK),
          ':prefix': av.s(GC_REPORT_PREFIX),
        },
        ScanIndexForward: false,
        ...(names && {
          ProjectionExpression: Object.keys(names).join(', '),
          ExpressionAttributeNames: names,
        }),
        ...(limit !== undefined && { Limit: limit }),
      },
      limit,
    );
  }
}

/** Code-unit order, as SQLite's BINARY collation orders the ASCII names the catalog holds. */
function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The layer facts a blob write knows, as attribute names and values (see BlobRecord). */
function layerFactValues(facts: { unpackedSize?: number; diffId?: Digest }) {
  return [
    facts.unpackedSize !== undefined && (['unpackedSize', av.n(facts.unpackedSize)] as const),
    facts.diffId !== undefined && (['diffId', av.s(facts.diffId)] as const),
  ].filter((fact) => fact !== false);
}
