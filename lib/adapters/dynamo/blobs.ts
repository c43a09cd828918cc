/**
 * Blob records in the DynamoDB table: each state transition one conditional write, the SQLite
 * adapter's statements one for one.
 */
import type { Digest } from '../../digest.ts';
import type { BlobRecord } from '../../ports/image-catalog.ts';
import { touchExpression } from './commit.ts';
import { av, compare, toBlob } from './items.ts';
import { keys, TTL_ATTRIBUTE } from './schema.ts';
import type { Table } from './table.ts';

/** How long a deleted blob's tombstone (its last generation) is kept: 30 days. */
const TOMBSTONE_TTL_S = 30 * 24 * 3600;
const BLOB_NAMES = {
  '#kind': 'kind',
  '#state': 'state',
  '#generation': 'generation',
  '#ttl': TTL_ATTRIBUTE,
};

export async function getBlob(table: Table, digest: Digest): Promise<BlobRecord | undefined> {
  const item = await table.get(keys.blob(digest));
  return item && item.state?.S !== 'gone' ? toBlob(item) : undefined;
}

export async function touchBlob(
  table: Table,
  digest: Digest,
  now: number,
): Promise<'live' | 'deleting' | 'absent'> {
  const { UpdateExpression, ...expression } = touchExpression(now);
  const outcome = await table.update(keys.blob(digest), UpdateExpression, expression);
  if (outcome.ok) return 'live';
  // The failed condition returns the record as it was: deleting means the collector holds it.
  return outcome.old?.state?.S === 'deleting' ? 'deleting' : 'absent';
}

export async function addBlob(
  table: Table,
  blob: { digest: Digest; size: number; unpackedSize?: number; diffId?: Digest },
  now: number,
): Promise<'live' | 'deleting'> {
  // One write instead of put-then-touch: creates the live record (ADD starts generation at 1,
  // or continues a tombstone's count), or touches a live one and fills a missing unpackedSize
  // or diffId; a deleting one fails the condition.
  const facts = layerFactValues(blob);
  const fill = facts.map(([name]) => `, #${name} = if_not_exists(#${name}, :${name})`).join('');
  const outcome = await table.update(
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

export async function fillLayerFacts(
  table: Table,
  digest: Digest,
  facts: { unpackedSize?: number; diffId?: Digest },
): Promise<boolean> {
  const known = layerFactValues(facts);
  if (known.length === 0) return (await getBlob(table, digest))?.state === 'live';
  const outcome = await table.update(
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

export async function listBlobs(table: Table): Promise<BlobRecord[]> {
  // Tombstones have their own kind: the Scan filter drops them before they are sent.
  const records = (await table.scanKinds(['blob'])).map(toBlob);
  return records.sort((a, b) => compare(a.digest, b.digest));
}

export async function beginBlobDeletion(
  table: Table,
  digest: Digest,
  expectedGeneration: number,
): Promise<boolean> {
  const outcome = await table.update(keys.blob(digest), 'SET #state = :deleting', {
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
export async function finishBlobDeletion(table: Table, digest: Digest): Promise<void> {
  await table.update(keys.blob(digest), 'SET #state = :gone, #kind = :tomb, #ttl = :ttl', {
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

export async function claimOrphanBlob(
  table: Table,
  digest: Digest,
  size: number,
  now: number,
): Promise<boolean> {
  const outcome = await table.update(
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

/** The layer facts a blob write knows, as attribute names and values (see BlobRecord). */
function layerFactValues(facts: { unpackedSize?: number; diffId?: Digest }) {
  return [
    facts.unpackedSize !== undefined && (['unpackedSize', av.n(facts.unpackedSize)] as const),
    facts.diffId !== undefined && (['diffId', av.s(facts.diffId)] as const),
  ].filter((fact) => fact !== false);
}
