/**
 * The DynamoDB catalog's one table: the single place that derives keys (like distribution's
 * paths.go), plus `createTable` for local emulators and first deployments.
 *
 * Table: string partition key `pk`, string sort key `sk`, on-demand billing, no GSI. TTL on
 * `ttl` (epoch seconds): blob tombstones and job records carry it.
 *
 * | item                | pk                     | sk                          | access pattern                                   |
 * |---------------------|------------------------|-----------------------------|--------------------------------------------------|
 * | tag                 | REPO#<repository>      | TAG#<tag>                   | GetItem; a repository's tags: Query begins_with  |
 * | digest ref          | REPO#<repository>      | DIGEST#<digest>             | GetItem; a repository's refs: Query begins_with  |
 * | manifest            | MANIFEST#<digest>      | MANIFEST                    | GetItem; lastUsedAt (last-used time) lives here  |
 * |                     |                        |                             | and `pulls` (ADD 1 in the pull's own write);     |
 * |                     |                        |                             | /cache/images BatchGets them per image listed    |
 * | manifest raw chunk  | MANIFEST#<digest>      | RAW#<incarnation>#<nnnn>    | Query, only when the manifest says rawChunks > 0 |
 * | reference counter   | MANIFEST#<digest>      | REFS                        | ConditionCheck refs = 0 before deleting          |
 * | image by config     | IMAGES                 | CONFIG#<config hex>#<digest>| Query begins_with: the manifests of an image ID  |
 * | image summary       | IMAGES                 | DIGEST#<manifest hex>       | Query begins_with DIGEST# (image ls) or a prefix |
 * | tag copy            | IMAGES                 | DIGEST#<hex>#TAG#<repo>:<t> | read with its summary (same Query)               |
 * | digest ref copy     | IMAGES                 | DIGEST#<hex>#REF#<repo>@<d> | read with its summary (same Query)               |
 * | entries marker      | IMAGES                 | ENTRIES_READY               | GetItem once per process: entries are complete   |
 * | blob record         | BLOB#<digest>          | BLOB                        | GetItem; every GC transition is conditional here |
 * |   (deleted: tombstone, state gone, kind blob-tombstone, keeps its generation until TTL)      |
 * | blob user           | BLOB#<digest>          | USER#<manifest>#<inc>       | Query begins_with USER#, Limit 1: still named?   |
 * | blob users marker   | IMAGES                 | BLOB_USERS_READY / _SINCE   | GetItem once per process: the index is complete  |
 * | pin                 | PINS                   | PIN#<name>                  | Query the partition (sorted by name)             |
 * | GC report           | GC_REPORTS             | REPORT#<seq, 16 digits>     | Query newest first, Limit n                      |
 * | GC report sequence  | GC_REPORTS             | SEQ                         | UpdateItem ADD seq 1                             |
 * | API token           | TOKENS                 | TOKEN#<sha256 hex of token> | GetItem by hash per request; Query to list       |
 * | job                 | JOB#<id>               | JOB                         | GetItem (follow, claim); TTL after it ends       |
 * | job key             | JOBKEY#<single-flight> | JOBKEY                      | names the key's active job; deleted at its end   |
 * | job listing         | JOBS                   | <createdAt, 15 digits>#<id> | Query newest first, Limit n, then BatchGetItem   |
 * |                     |                        |                             | the jobs (dashboard); put with the job, same TTL |
 * | stats hour          | STATS                  | HOUR#<hour start ms, 16 d.> | UpdateItem ADD c_<counter>, SET g_<gauge>; Query a range; TTL 35 days |
 * | watch               | WATCHES                | WATCH#<reference>           | GetItem; Query the partition to list (<= 1000);  |
 * |                     |                        |                             | claims are UpdateItem conditional on nextCheckAt |
 * | registry pause      | REGISTRY_PAUSES        | PAUSE#<registry host>       | PutItem keeping the later `until`; Query to list |
 * | background pulls    | PULL_BUDGET#<registry> | HOUR#<hour start ms, 16 d.> | UpdateItem ADD pulls 1 if pulls < limit; TTL 1 day |
 *
 * Image entries (image-entries.ts): what `image ls`, inspect, history, tag, rmi and save read, so
 * no request Scans the table (issue 13). Per image manifest a summary (config digest, image
 * summary, blobs, createdAt) and a copy of every tag and digest ref naming it sort together, so
 * one Query answers a listing (`DIGEST#`) or one image (`DIGEST#<hex>`). The copies and the
 * summary are written and deleted in the same transaction as the tag, ref or manifest they copy,
 * so they cannot drift. Tables written before entries existed are backfilled by maintenance,
 * which then writes ENTRIES_READY; until then reads take the Scan path below. A table created by
 * `createTable` starts with the marker.
 *
 * Why IMAGES is not sharded: one partition serves 3,000 read and 1,000 write units a second.
 * Writes to it come from commits (three to five small items per pull or tag), far below that
 * for a cache; reads are strongly consistent Queries of ~0.3 KB per name, so a listing of 5,000
 * images costs ~1,350 units and the partition holds about two such listings a second before
 * DynamoDB splits it for heat (the table has no LSI, so an item collection may span
 * partitions). Shard it (IMAGES#<first hex digit>, 16 Queries per listing, one per lookup) if
 * listings of that size become that frequent.
 *
 * Listings of whole entity types (listTags, listDigestRefs, listManifests, listBlobs) are
 * parallel Scans with ConsistentRead and a filter on `kind`; they pay for the table once per
 * call, which is what a mark-and-sweep over every blob costs anyway (100k blob records of
 * ~200 bytes are ~20 MB: about 20 Scan pages, spread over the segments).
 *
 * They serve the collector, retention and the backfill (on their schedule), never a request.
 *
 * Why no GSI: a GSI read is eventually consistent, and the catalog answers questions whose
 * staleness breaks invariants (is a manifest referenced? which manifests exist when GC marks?).
 * The image lookup therefore lives in the base table as small items written in the same
 * transaction as the manifest and deleted in the same transaction as it, read with
 * ConsistentRead: `docker image inspect <id>` right after a pull finds it.
 *
 * Stats hours (stats-log.ts, issue 14): one item per UTC hour holding what each counter grew by
 * (`c_<name>`, ADDed by every process that flushes, so two containers' deltas both land) and
 * the last value of each gauge (`g_<name>`, SET). A flush is one UpdateItem; `/cache/stats`
 * reads a window with one Query (840 items of well under 1 KB at most for 35 days, so one page).
 * One partition takes every container's flushes: at one per invocation that is far below its
 * 1,000 writes a second for a cache's request rates.
 *
 * Why the counter item: deleteManifestIfUnreferenced must be atomic without scanning every tag.
 * Each tag (slots `manifest` and `source`), digest ref (`manifest` and `digest`) and pin
 * (`manifest`) adds one to the counter of each digest it names, in the same transaction that
 * writes it, and subtracts when it moves or goes. The counter is its own item, not an attribute
 * of the manifest, because a tag may name a digest that is stored only later (an index pulled
 * after the tag recorded it as `source`); ADD creates it on first use and an absent counter means
 * zero. Deletion is then one transaction: delete the manifest (if unchanged) and the counter
 * (if zero).
 *
 * Why chunks: items are capped at 400 KB and manifests at 4 MiB. A raw manifest whose item would
 * pass INLINE_ITEM_LIMIT is split into RAW chunk items written before the manifest item, under a
 * random incarnation id the manifest item records; readers only follow the chunks of the
 * incarnation the manifest item names, so a re-store racing a delete never reads half of one and
 * half of another. A transaction is limited to 4 MB in total too, which is why chunks are not
 * part of the commit transaction.
 */
import {
  CreateTableCommand,
  DescribeTableCommand,
  type DynamoDBClient,
  PutItemCommand,
  ResourceInUseException,
  UpdateTimeToLiveCommand,
} from '@aws-sdk/client-dynamodb';
import { type Digest, digestHex } from '../../digest.ts';

/** Largest transaction DynamoDB accepts, in actions. */
export const MAX_TRANSACTION_ACTIONS = 100;
/** Above this estimated item size, a manifest's raw bytes go to chunk items (limit: 400 KB). */
export const INLINE_ITEM_LIMIT = 350_000;
/** Bytes of raw manifest per chunk item. */
export const RAW_CHUNK_BYTES = 300_000;
/** Inline raw bytes one commit transaction may carry before its manifests are chunked (4 MB). */
export const TRANSACTION_INLINE_BUDGET = 3_000_000;
/** GC reports kept; older ones are dropped as new ones arrive. */
export const GC_REPORTS_KEPT = 100;
/** The attribute DynamoDB's TTL deletes by (epoch seconds). */
export const TTL_ATTRIBUTE = 'ttl';

export type ItemKind =
  | 'tag'
  | 'ref'
  | 'manifest'
  | 'raw'
  | 'refs'
  | 'image'
  | 'image-tag'
  | 'image-ref'
  | 'marker'
  | 'blob'
  | 'blob-user'
  | 'pin'
  | 'gc'
  | 'token'
  | 'job'
  | 'job-key'
  | 'stats'
  | 'watch'
  | 'registry-pause'
  | 'pull-budget';

export interface Key {
  pk: string;
  sk: string;
}

export const keys = {
  tag: (repository: string, tag: string): Key => ({ pk: `REPO#${repository}`, sk: `TAG#${tag}` }),
  digestRef: (repository: string, digest: Digest): Key => ({
    pk: `REPO#${repository}`,
    sk: `DIGEST#${digest}`,
  }),
  manifest: (digest: Digest): Key => ({ pk: `MANIFEST#${digest}`, sk: 'MANIFEST' }),
  refs: (digest: Digest): Key => ({ pk: `MANIFEST#${digest}`, sk: 'REFS' }),
  rawChunk: (digest: Digest, incarnation: string, index: number): Key => ({
    pk: `MANIFEST#${digest}`,
    sk: `${rawChunkPrefix(incarnation)}${String(index).padStart(4, '0')}`,
  }),
  imageByConfig: (config: Digest, manifest: Digest): Key => ({
    pk: IMAGES_PK,
    sk: `CONFIG#${digestHex(config)}#${manifest}`,
  }),
  imageByDigest: (manifest: Digest): Key => ({
    pk: IMAGES_PK,
    sk: `DIGEST#${digestHex(manifest)}`,
  }),
  /** A tag's copy beside the summary of the manifest it names (sorts right after it). */
  imageTag: (manifest: Digest, repository: string, tag: string): Key => ({
    pk: IMAGES_PK,
    sk: `DIGEST#${digestHex(manifest)}#TAG#${repository}:${tag}`,
  }),
  /** A digest ref's copy beside the summary of the manifest it names. */
  imageRef: (manifest: Digest, repository: string, digest: Digest): Key => ({
    pk: IMAGES_PK,
    sk: `DIGEST#${digestHex(manifest)}#REF#${repository}@${digest}`,
  }),
  /** Present once every image's entries exist (new table, or backfill finished). */
  entriesReady: (): Key => ({ pk: IMAGES_PK, sk: ENTRIES_READY_SK }),
  blob: (digest: Digest): Key => ({ pk: `BLOB#${digest}`, sk: 'BLOB' }),
  /** One per blob a stored manifest names, beside the blob record (blob-users.ts). */
  blobUser: (blob: Digest, manifest: Digest, incarnation: string): Key => ({
    pk: `BLOB#${blob}`,
    sk: `USER#${manifest}#${incarnation}`,
  }),
  /** Present once every stored manifest has its blob users (new table, or maintenance done). */
  blobUsersReady: (): Key => ({ pk: IMAGES_PK, sk: 'BLOB_USERS_READY' }),
  /** When maintenance first found the table without that marker. */
  blobUsersSince: (): Key => ({ pk: IMAGES_PK, sk: 'BLOB_USERS_SINCE' }),
  pin: (name: string): Key => ({ pk: PINS_PK, sk: `PIN#${name}` }),
  gcReport: (seq: number): Key => ({
    pk: GC_REPORTS_PK,
    sk: `${GC_REPORT_PREFIX}${String(seq).padStart(16, '0')}`,
  }),
  gcSequence: (): Key => ({ pk: GC_REPORTS_PK, sk: 'SEQ' }),
  token: (hash: string): Key => ({ pk: TOKENS_PK, sk: `TOKEN#${hash}` }),
  job: (id: string): Key => ({ pk: `JOB#${id}`, sk: 'JOB' }),
  jobKey: (key: string): Key => ({ pk: `JOBKEY#${key}`, sk: 'JOBKEY' }),
  /** Sorts by creation time: the zero-padded ms since epoch, then the id. */
  jobListing: (createdAt: number, id: string): Key => ({
    pk: JOBS_PK,
    sk: `${String(Math.trunc(createdAt)).padStart(15, '0')}#${id}`,
  }),
  /** Zero-padded so the sort key orders hours by time. */
  statsHour: (hourStart: number): Key => ({ pk: STATS_PK, sk: hourSk(hourStart) }),
  watch: (name: string): Key => ({ pk: WATCHES_PK, sk: `WATCH#${name}` }),
  registryPause: (registry: string): Key => ({ pk: REGISTRY_PAUSES_PK, sk: `PAUSE#${registry}` }),
  /** A partition per registry: each budget's takes contend only with its own. */
  pullBudget: (registry: string, hourStart: number): Key => ({
    pk: `PULL_BUDGET#${registry}`,
    sk: hourSk(hourStart),
  }),
};

export const IMAGES_PK = 'IMAGES';
export const WATCHES_PK = 'WATCHES';
export const REGISTRY_PAUSES_PK = 'REGISTRY_PAUSES';
export const ENTRIES_READY_SK = 'ENTRIES_READY';
export const PINS_PK = 'PINS';
export const GC_REPORTS_PK = 'GC_REPORTS';
export const GC_REPORT_PREFIX = 'REPORT#';
export const TOKENS_PK = 'TOKENS';
export const JOBS_PK = 'JOBS';
export const STATS_PK = 'STATS';
export const STATS_HOUR_PREFIX = 'HOUR#';
/** Attribute prefixes of a stats hour's figures: counters (ADD) and gauges (SET). */
export const STATS_COUNTER_PREFIX = 'c_';
export const STATS_GAUGE_PREFIX = 'g_';

function hourSk(hourStart: number): string {
  return `${STATS_HOUR_PREFIX}${String(hourStart).padStart(16, '0')}`;
}

export function rawChunkPrefix(incarnation: string): string {
  return `RAW#${incarnation}#`;
}

/**
 * Creates the table (on-demand, TTL on `ttl`) and waits until it is active. Only called when the
 * operator asks (`--create-resources`, local emulators); an existing table is left as it is.
 */
export async function createTable(client: DynamoDBClient, tableName: string): Promise<void> {
  let created = false;
  try {
    await client.send(
      new CreateTableCommand({
        TableName: tableName,
        BillingMode: 'PAY_PER_REQUEST',
        AttributeDefinitions: [
          { AttributeName: 'pk', AttributeType: 'S' },
          { AttributeName: 'sk', AttributeType: 'S' },
        ],
        KeySchema: [
          { AttributeName: 'pk', KeyType: 'HASH' },
          { AttributeName: 'sk', KeyType: 'RANGE' },
        ],
      }),
    );
    created = true;
  } catch (error) {
    if (!(error instanceof ResourceInUseException)) throw error;
  }
  for (let attempt = 0; ; attempt++) {
    const { Table } = await client.send(new DescribeTableCommand({ TableName: tableName }));
    if (Table?.TableStatus === 'ACTIVE') break;
    if (attempt >= 120) throw new Error(`table ${tableName} did not become active`);
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  try {
    await client.send(
      new UpdateTimeToLiveCommand({
        TableName: tableName,
        TimeToLiveSpecification: { AttributeName: TTL_ATTRIBUTE, Enabled: true },
      }),
    );
  } catch (error) {
    // Enabling TTL twice is refused; the setting is what we wanted either way.
    if (!/already enabled/i.test((error as Error).message)) throw error;
  }
  if (created) {
    // A table this call created holds no image from before entries and blob users existed:
    // nothing to backfill.
    for (const { pk, sk } of [keys.entriesReady(), keys.blobUsersReady()]) {
      await client.send(
        new PutItemCommand({
          TableName: tableName,
          Item: { pk: { S: pk }, sk: { S: sk }, kind: { S: 'marker' } },
        }),
      );
    }
  }
}
