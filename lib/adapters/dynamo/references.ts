/**
 * Reference counting, so deleteManifestIfUnreferenced is one transaction instead of a scan of
 * every tag (see schema.ts). Every write of a referrer (tag, digest ref, pin) follows the same
 * optimistic pattern: read the current item, then one transaction that writes it on condition
 * that the digests it names are still the ones read, and adjusts the counters by the difference.
 * A lost race re-reads and tries again, so counters never drift from the referrers.
 */
import type { TransactWriteItem } from '@aws-sdk/client-dynamodb';
import type { Digest } from '../../digest.ts';
import { deleteBlobUsers } from './blob-users.ts';
import { nameCopyActions } from './image-entries.ts';
import { type Item, keyItem, optNum, optStr, str } from './items.ts';
import { deleteChunks } from './manifests.ts';
import { type Key, keys } from './schema.ts';
import { backoff, CONFLICT_ATTEMPTS, lostRace, type Table } from './table.ts';

/** The digests a referrer item holds, one entry per slot (a digest may fill two). */
export function slotsOf(item: Item | undefined): Digest[] {
  if (!item) return [];
  switch (item.kind?.S) {
    case 'tag':
      return [str(item, 'manifest'), str(item, 'source')] as Digest[];
    case 'ref':
      return [str(item, 'manifest'), str(item, 'digest')] as Digest[];
    case 'pin':
      return [str(item, 'manifest')] as Digest[];
    default:
      throw new Error(`item of kind ${item.kind?.S} refers to nothing`);
  }
}

/** Net change per digest when a referrer goes from naming `before` to naming `after`. */
export function referenceDelta(before: Digest[], after: Digest[]): Map<Digest, number> {
  const delta = new Map<Digest, number>();
  for (const d of before) delta.set(d, (delta.get(d) ?? 0) - 1);
  for (const d of after) delta.set(d, (delta.get(d) ?? 0) + 1);
  for (const [d, n] of delta) if (n === 0) delta.delete(d);
  return delta;
}

/** Adds deltas into `into` (one commit may move a tag and a digest ref at once). */
export function mergeDelta(into: Map<Digest, number>, delta: Map<Digest, number>): void {
  for (const [d, n] of delta) {
    const sum = (into.get(d) ?? 0) + n;
    if (sum === 0) into.delete(d);
    else into.set(d, sum);
  }
}

export function counterActions(table: string, delta: Map<Digest, number>): TransactWriteItem[] {
  return [...delta].map(([digest, n]) => ({
    Update: {
      TableName: table,
      Key: keyItem(keys.refs(digest)),
      UpdateExpression: 'SET #kind = :kind ADD #refs :n',
      ExpressionAttributeNames: { '#kind': 'kind', '#refs': 'refs' },
      ExpressionAttributeValues: { ':kind': { S: 'refs' }, ':n': { N: String(n) } },
    },
  }));
}

/**
 * The condition that the referrer item at the key is still what was read: absent, or naming the
 * same digests. Other attributes (checkedAt, notes) may change without disturbing the counters.
 */
export interface Condition {
  ConditionExpression: string;
  ExpressionAttributeNames?: Record<string, string>;
  ExpressionAttributeValues?: Item;
}

export function unchangedCondition(old: Item | undefined): Condition {
  if (!old) {
    return { ConditionExpression: 'attribute_not_exists(pk)' };
  }
  if (old.kind?.S === 'tag') {
    return {
      ConditionExpression: '#manifest = :oldManifest AND #source = :oldSource',
      ExpressionAttributeNames: { '#manifest': 'manifest', '#source': 'source' },
      ExpressionAttributeValues: {
        ':oldManifest': { S: str(old, 'manifest') },
        ':oldSource': { S: str(old, 'source') },
      },
    };
  }
  return {
    ConditionExpression: '#manifest = :oldManifest',
    ExpressionAttributeNames: { '#manifest': 'manifest' },
    ExpressionAttributeValues: { ':oldManifest': { S: str(old, 'manifest') } },
  };
}

/**
 * Replaces (item given) or deletes (undefined) the referrer at `key`, keeping counters right.
 * Answers the item that was there before, or undefined.
 */
export async function writeReferrer(
  table: Table,
  key: Key,
  next: Item | undefined,
): Promise<Item | undefined> {
  for (let attempt = 0; attempt < CONFLICT_ATTEMPTS; attempt++) {
    if (attempt > 0) await backoff(attempt);
    const old = await table.get(key);
    if (!old && !next) return undefined;
    const condition = unchangedCondition(old);
    const write: TransactWriteItem = next
      ? { Put: { TableName: table.name, Item: next, ...condition } }
      : { Delete: { TableName: table.name, Key: keyItem(key), ...condition } };
    const delta = referenceDelta(slotsOf(old), slotsOf(next));
    const outcome = await table.transact([
      write,
      ...counterActions(table.name, delta),
      ...nameCopyActions(table.name, old, next),
    ]);
    if (outcome.ok) return old;
  }
  throw lostRace();
}

/**
 * Deletes the manifest item, its counter and its image lookups in one transaction, on condition
 * that the counter is absent or zero and the manifest is the incarnation read. Chunks and blob
 * users of the deleted incarnation go afterwards: nothing reads the chunks once the manifest item
 * is gone, and the users must outlive it (blob-users.ts).
 */
export async function deleteManifestIfUnreferenced(table: Table, digest: Digest) {
  for (let attempt = 0; attempt < CONFLICT_ATTEMPTS; attempt++) {
    if (attempt > 0) await backoff(attempt);
    const item = await table.get(keys.manifest(digest), [
      'inc',
      'rawChunks',
      'configDigest',
      'blobs',
    ]);
    if (!item) return false;
    const incarnation = str(item, 'inc');
    const config = optStr(item, 'configDigest') as Digest | undefined;
    const actions: TransactWriteItem[] = [
      {
        Delete: {
          TableName: table.name,
          Key: keyItem(keys.refs(digest)),
          ConditionExpression: 'attribute_not_exists(pk) OR #refs = :zero',
          ExpressionAttributeNames: { '#refs': 'refs' },
          ExpressionAttributeValues: { ':zero': { N: '0' } },
        },
      },
      {
        Delete: {
          TableName: table.name,
          Key: keyItem(keys.manifest(digest)),
          ConditionExpression: '#inc = :inc',
          ExpressionAttributeNames: { '#inc': 'inc' },
          ExpressionAttributeValues: { ':inc': { S: incarnation } },
        },
      },
    ];
    if (config) {
      for (const key of [keys.imageByConfig(config, digest), keys.imageByDigest(digest)]) {
        actions.push({ Delete: { TableName: table.name, Key: keyItem(key) } });
      }
    }
    const outcome = await table.transact(actions);
    if (outcome.ok) {
      await deleteChunks(table, digest, incarnation, optNum(item, 'rawChunks') ?? 0).catch(() => {
        // Chunks of a deleted incarnation are unreachable; a failed cleanup only wastes space.
      });
      const blobs = (item.blobs?.L ?? []).map((b) => b.S as Digest);
      await deleteBlobUsers(table, digest, incarnation, blobs).catch(() => {
        // Leftover users only keep their blobs until maintenance drops them.
      });
      return true;
    }
    // Referenced: the answer. Otherwise the manifest changed or a writer raced us: re-read.
    if (outcome.failed.includes(0)) return false;
  }
  throw lostRace();
}
