/**
 * The blob -> manifest reverse index: one small "user" item per blob a stored manifest names,
 * in the blob's own partition (`BLOB#<blob>` / `USER#<manifest>#<incarnation>`), so the
 * collection after an rmi or prune asks "does any manifest still name this blob?" with one
 * Query per blob instead of a Scan of every manifest (issue 13).
 *
 * The invariant the collector relies on: while a manifest item exists, the user items of its
 * incarnation exist. It holds because of the order of writes, not a transaction (a manifest
 * with 99 layers would not fit one next to its blob touches):
 *
 * - Stored: the user items are written BEFORE the transaction that creates the manifest item
 *   (as raw chunks are). A commit that fails leaves them behind; they are dropped at once, best
 *   effort, and otherwise by maintenance.
 * - Deleted: the user items of an incarnation go AFTER the manifest item of that incarnation is
 *   deleted. A re-store writes a new incarnation's items, so the late delete never touches them.
 *
 * Why the collector stays safe (lib/gc.ts reads blob records before it asks): a manifest stored
 * before the blob snapshot had its users before it, so the Query sees one; a manifest stored
 * after it touches the blob in its commit, which bumps the generation the collector's
 * conditional transition expects. Leftover items only keep a blob longer, never lose one.
 *
 * Tables written before the index existed: until maintenance has written the missing items and
 * the marker, `referencedBlobs` falls back to marking from every manifest (a Scan), as before.
 * The marker waits until a pass finds nothing missing at least UPGRADE_SETTLE_MS after the first
 * pass, so a worker of the previous version still finishing a commit (Lambda: 15 minutes at
 * most) cannot store a manifest without users after the index was declared complete.
 */
import type { Digest } from '../../digest.ts';
import { av, type Item, keyItem, num, optNum, str } from './items.ts';
import type { Placement } from './manifests.ts';
import { keys } from './schema.ts';
import type { Table } from './table.ts';

/** Longer than the longest invocation of a worker of the previous version (Lambda: 15 min). */
export const UPGRADE_SETTLE_MS = 20 * 60_000;
/** A user item without its manifest incarnation this old is a leftover of a failed commit. */
export const LEFTOVER_USER_AGE_MS = 60 * 60_000;
/** Blobs asked about at once. */
const QUERY_CONCURRENCY = 16;

const USER_PREFIX = 'USER#';

/** The distinct blobs of a manifest, each named once however often its layers repeat. */
function distinct(blobs: readonly Digest[]): Digest[] {
  return [...new Set(blobs)];
}

function userItem(blob: Digest, manifest: Digest, incarnation: string, now: number): Item {
  return {
    ...keyItem(keys.blobUser(blob, manifest, incarnation)),
    kind: av.s('blob-user'),
    manifest: av.s(manifest),
    inc: av.s(incarnation),
    createdAt: av.n(now),
  };
}

/**
 * Writes a placement's user items before its manifest item exists (see the module comment).
 * Stamped with the wall clock, not the commit's clock: their age decides when a leftover goes.
 */
export async function writeBlobUsers(table: Table, p: Placement): Promise<void> {
  if (p.usersWritten) return;
  await putUsers(table, p.record.digest, p.incarnation, p.record.blobs, Date.now());
  p.usersWritten = true;
}

async function putUsers(
  table: Table,
  manifest: Digest,
  incarnation: string,
  blobs: readonly Digest[],
  now: number,
): Promise<void> {
  await table.batchWrite(
    distinct(blobs).map((blob) => ({
      PutRequest: { Item: userItem(blob, manifest, incarnation, now) },
    })),
  );
}

/** Removes the user items of one incarnation; only after its manifest item is gone. */
export async function deleteBlobUsers(
  table: Table,
  manifest: Digest,
  incarnation: string,
  blobs: readonly Digest[],
): Promise<void> {
  await table.batchWrite(
    distinct(blobs).map((blob) => ({
      DeleteRequest: { Key: keyItem(keys.blobUser(blob, manifest, incarnation)) },
    })),
  );
}

/** User items a commit wrote for manifests it did not store: removed, best effort. */
export async function dropUnusedUsers(table: Table, placements: Iterable<Placement>) {
  for (const p of placements) {
    if (!p.usersWritten || p.used) continue;
    await deleteBlobUsers(table, p.record.digest, p.incarnation, p.record.blobs).catch(() => {
      // Leftovers only keep their blobs until maintenance drops them (LEFTOVER_USER_AGE_MS).
    });
  }
}

export async function blobUsersReady(table: Table): Promise<boolean> {
  return (await table.get(keys.blobUsersReady(), ['pk'])) !== undefined;
}

/** Of the given blobs, those some user item names: one consistent Query (Limit 1) per blob. */
export async function blobsWithUsers(table: Table, blobs: Iterable<Digest>): Promise<Set<Digest>> {
  const pending = [...new Set(blobs)];
  const used = new Set<Digest>();
  let next = 0;
  const worker = async () => {
    while (next < pending.length) {
      const blob = pending[next++]!;
      const found = await table.query(
        {
          KeyConditionExpression: 'pk = :pk AND begins_with(sk, :prefix)',
          ExpressionAttributeValues: {
            ':pk': av.s(keys.blob(blob).pk),
            ':prefix': av.s(USER_PREFIX),
          },
          ProjectionExpression: 'pk',
          Limit: 1,
        },
        1,
      );
      if (found.length > 0) used.add(blob);
    }
  };
  await Promise.all(Array.from({ length: QUERY_CONCURRENCY }, worker));
  return used;
}

export interface BlobUsersPass {
  /** User items written for manifests that lacked them. */
  written: number;
  /** Leftover user items of incarnations no manifest item has. */
  dropped: number;
}

/**
 * Maintenance (may Scan, on its schedule): writes the user items stored manifests lack, drops
 * leftovers older than LEFTOVER_USER_AGE_MS, and writes the marker once the index is complete
 * (see the module comment for the wait).
 */
export async function reconcileBlobUsers(table: Table, now: number): Promise<BlobUsersPass> {
  const items = await table.scanKinds(['manifest', 'blob-user']);
  const have = new Set<string>();
  for (const item of items) {
    if (item.kind?.S === 'blob-user') have.add(str(item, 'sk'));
  }
  const incarnations = new Set<string>();
  let written = 0;
  for (const item of items) {
    if (item.kind?.S !== 'manifest') continue;
    const manifest = str(item, 'digest') as Digest;
    const incarnation = str(item, 'inc');
    incarnations.add(`${manifest}#${incarnation}`);
    const blobs = (item.blobs?.L ?? []).map((b) => b.S as Digest);
    const missing = distinct(blobs).filter(
      (blob) => !have.has(keys.blobUser(blob, manifest, incarnation).sk),
    );
    // A manifest deleted since the Scan leaves these behind: leftovers, dropped on a later pass.
    await putUsers(table, manifest, incarnation, missing, now);
    written += missing.length;
  }
  const leftovers = items.filter(
    (item) =>
      item.kind?.S === 'blob-user' &&
      !incarnations.has(`${str(item, 'manifest')}#${str(item, 'inc')}`) &&
      num(item, 'createdAt') <= now - LEFTOVER_USER_AGE_MS,
  );
  await table.batchWrite(
    leftovers.map((item) => ({ DeleteRequest: { Key: { pk: item.pk!, sk: item.sk! } } })),
  );
  await markReadyWhenSettled(table, now, written);
  return { written, dropped: leftovers.length };
}

async function markReadyWhenSettled(table: Table, now: number, written: number): Promise<void> {
  if (await blobUsersReady(table)) return;
  const since = await table.get(keys.blobUsersSince());
  const firstSeen = since ? optNum(since, 'at') : undefined;
  if (firstSeen === undefined) {
    await table.put({ ...keyItem(keys.blobUsersSince()), kind: av.s('marker'), at: av.n(now) });
    return;
  }
  if (written === 0 && now - firstSeen >= UPGRADE_SETTLE_MS) {
    await table.put({ ...keyItem(keys.blobUsersReady()), kind: av.s('marker') });
  }
}
