/**
 * Image entries in the IMAGES partition (layout: schema.ts), so `image ls`, inspect, history,
 * rmi and save read Query results instead of Scans of the table. Per image manifest a summary
 * item `DIGEST#<hex>` holds what a listing shows; every tag and digest ref has a copy sorting
 * right after it, `DIGEST#<hex>#TAG#<repo>:<tag>` and `DIGEST#<hex>#REF#<repo>@<digest>`.
 *
 * The copies never drift from the names: they are written and deleted in the same transaction
 * as the tag or digest ref itself (commit.ts, references.ts call `nameCopyActions`), and the
 * summary in the same transaction as the manifest item. Tables with images from before entries
 * existed are backfilled on the maintenance schedule; until its marker exists the catalog reads
 * the old way (catalog.ts), so an upgrade never shows an empty `image ls`.
 */
import type { TransactWriteItem } from '@aws-sdk/client-dynamodb';
import { type Digest, digestHex } from '../../digest.ts';
import { sortEntries, tagEntry } from '../../image-entries.ts';
import type { ImageEntry, ImageManifestEntry, ImageSummary } from '../../ports/image-catalog.ts';
import { av, type Item, keyItem, num, optStr, str, toDigestRef, toTag } from './items.ts';
import { unchangedCondition } from './references.ts';
import { IMAGES_PK, type Key, keys } from './schema.ts';
import { backoff, CONFLICT_ATTEMPTS, lostRace, type Table } from './table.ts';

/** `DIGEST#` plus 64 hex digits: the length of a summary's sort key (copies are longer). */
const SUMMARY_SK_LENGTH = 'DIGEST#'.length + 64;
/** Backfill transactions in flight at once. */
const BACKFILL_CONCURRENCY = 8;

/** The summary item of an image manifest: everything its entry holds but the names. */
export function summaryItem(manifest: ImageManifestEntry): Item {
  return {
    ...keyItem(keys.imageByDigest(manifest.digest)),
    kind: av.s('image'),
    manifest: av.s(manifest.digest),
    configDigest: av.s(manifest.image.configDigest),
    image: av.s(JSON.stringify(manifest.image)),
    blobs: av.list(manifest.blobs),
    createdAt: av.n(manifest.createdAt),
  };
}

/** Where the copy of a tag or digest ref item lives; undefined for other referrers (pins). */
function copyKey(item: Item): Key | undefined {
  const manifest = str(item, 'manifest') as Digest;
  switch (item.kind?.S) {
    case 'tag':
      return keys.imageTag(manifest, str(item, 'repository'), str(item, 'tag'));
    case 'ref':
      return keys.imageRef(manifest, str(item, 'repository'), str(item, 'digest') as Digest);
    default:
      return undefined;
  }
}

function copyItem(item: Item, key: Key): Item {
  const { pk: _pk, sk: _sk, kind, checkedAt: _checked, ...fields } = item;
  return { ...keyItem(key), ...fields, kind: av.s(kind?.S === 'tag' ? 'image-tag' : 'image-ref') };
}

/**
 * The writes that keep the copies equal to a referrer going from `old` to `next` (either may
 * be absent): delete the old copy unless the new one has its key, put the new one.
 */
export function nameCopyActions(
  table: string,
  old: Item | undefined,
  next: Item | undefined,
): TransactWriteItem[] {
  const oldKey = old && copyKey(old);
  const nextKey = next && copyKey(next);
  const actions: TransactWriteItem[] = [];
  if (oldKey && oldKey.sk !== nextKey?.sk) {
    actions.push({ Delete: { TableName: table, Key: keyItem(oldKey) } });
  }
  if (next && nextKey) actions.push({ Put: { TableName: table, Item: copyItem(next, nextKey) } });
  return actions;
}

/** Entries from IMAGES items: summaries with the copies that sort after them. */
function entriesFrom(items: Item[]): ImageEntry[] {
  const byManifest = new Map<string, ImageEntry>();
  for (const item of items) {
    if (item.kind?.S !== 'image' || item.sk?.S?.length !== SUMMARY_SK_LENGTH) continue;
    const image = optStr(item, 'image');
    if (image === undefined) continue; // a lookup from before entries; the backfill fills it
    const manifest: ImageManifestEntry = {
      digest: str(item, 'manifest') as Digest,
      blobs: (item.blobs?.L ?? []).map((b) => b.S as Digest),
      image: JSON.parse(image) as ImageSummary,
      createdAt: num(item, 'createdAt'),
    };
    byManifest.set(manifest.digest, { manifest, tags: [], digestRefs: [] });
  }
  for (const item of items) {
    const entry = item.manifest?.S ? byManifest.get(item.manifest.S) : undefined;
    if (item.kind?.S === 'image-tag')
      entry?.tags.push(tagEntry(toTag({ ...item, checkedAt: av.n(0) })));
    if (item.kind?.S === 'image-ref') entry?.digestRefs.push(toDigestRef(item));
  }
  return sortEntries([...byManifest.values()]);
}

function queryPrefix(table: Table, prefix: string): Promise<Item[]> {
  return table.query({
    KeyConditionExpression: 'pk = :pk AND begins_with(sk, :prefix)',
    ExpressionAttributeValues: { ':pk': av.s(IMAGES_PK), ':prefix': av.s(prefix) },
  });
}

/** `image ls`: one Query of the partition (paged), growing with the images it lists. */
export async function listImageEntries(table: Table): Promise<ImageEntry[]> {
  return entriesFrom(await queryPrefix(table, 'DIGEST#'));
}

/**
 * Entries by manifest or config prefix: the matches, then the other manifests of the matched
 * configs through their CONFIG# lookups. A handful of Queries, whatever the table holds.
 */
export async function findImageEntries(table: Table, hexPrefix: string): Promise<ImageEntry[]> {
  const [byDigest, byConfig] = await Promise.all([
    queryPrefix(table, `DIGEST#${hexPrefix}`),
    queryPrefix(table, `CONFIG#${hexPrefix}`),
  ]);
  const found = entriesFrom(byDigest);
  // CONFIG#<config hex>#<manifest digest>: every manifest of every config the prefix matched.
  const siblings = byConfig.map((item) => str(item, 'manifest') as Digest);
  const configs = new Set(found.map((e) => digestHex(e.manifest.image.configDigest)));
  for (const item of byConfig) configs.delete(str(item, 'sk').split('#')[1]!);
  const more = await Promise.all([...configs].map((hex) => queryPrefix(table, `CONFIG#${hex}#`)));
  for (const item of more.flat()) siblings.push(str(item, 'manifest') as Digest);
  const have = new Set(found.map((e) => e.manifest.digest));
  const missing = [...new Set(siblings)].filter((d) => !have.has(d));
  const rest = await Promise.all(missing.map((d) => queryPrefix(table, `DIGEST#${digestHex(d)}`)));
  return sortEntries([...found, ...entriesFrom(rest.flat())]);
}

/** Whether every image's entries exist (the marker a new table or a finished backfill writes). */
export async function entriesReady(table: Table): Promise<boolean> {
  return (await table.get(keys.entriesReady(), ['pk'])) !== undefined;
}

/**
 * Writes the summaries and name copies of records stored before entries existed, then the
 * marker. Runs on the maintenance schedule and may Scan, as the collector does. Each write is a
 * transaction conditional on the record still being what the Scan saw: a record changed since
 * was written by code that maintains its entries itself, so it is skipped.
 */
export async function backfillImageEntries(table: Table): Promise<number> {
  if (await entriesReady(table)) return 0;
  const items = await table.scanKinds(['manifest', 'tag', 'ref']);
  let written = 0;
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      if (await backfillOne(table, items[next++]!)) written++;
    }
  };
  await Promise.all(Array.from({ length: BACKFILL_CONCURRENCY }, worker));
  await table.put({ ...keyItem(keys.entriesReady()), kind: av.s('marker') });
  return written;
}

async function backfillOne(table: Table, item: Item): Promise<boolean> {
  const actions = backfillActions(table.name, item);
  if (actions.length === 0) return false;
  for (let attempt = 0; attempt < CONFLICT_ATTEMPTS; attempt++) {
    if (attempt > 0) await backoff(attempt);
    const outcome = await table.transact(actions);
    if (outcome.ok) return true;
    if (!outcome.conflict) return false; // changed or gone since the Scan: not ours to write
  }
  throw lostRace();
}

/** A condition that `item` is unchanged, and the entry write it guards. */
function backfillActions(table: string, item: Item): TransactWriteItem[] {
  const key = { pk: str(item, 'pk'), sk: str(item, 'sk') };
  if (item.kind?.S === 'manifest') {
    const image = optStr(item, 'image');
    if (image === undefined) return []; // an index: no entry of its own
    const summary = summaryItem({
      digest: str(item, 'digest') as Digest,
      blobs: (item.blobs?.L ?? []).map((b) => b.S as Digest),
      image: JSON.parse(image) as ImageSummary,
      createdAt: num(item, 'createdAt'),
    });
    return [
      {
        ConditionCheck: {
          TableName: table,
          Key: keyItem(key),
          ConditionExpression: '#inc = :inc',
          ExpressionAttributeNames: { '#inc': 'inc' },
          ExpressionAttributeValues: { ':inc': av.s(str(item, 'inc')) },
        },
      },
      { Put: { TableName: table, Item: summary } },
    ];
  }
  return [
    { ConditionCheck: { TableName: table, Key: keyItem(key), ...unchangedCondition(item) } },
    ...nameCopyActions(table, undefined, item),
  ];
}
