/**
 * Manifest raw bytes: inline in the manifest item when it fits, otherwise in chunk items of one
 * incarnation (see schema.ts for why). Reading follows only the incarnation the manifest item
 * names and checks the assembled length, so a manifest re-stored while being read is re-read,
 * never returned half old and half new.
 */
import { randomUUID } from 'node:crypto';
import type { Digest } from '../../digest.ts';
import type { ManifestRecord } from '../../ports/image-catalog.ts';
import {
  type Item,
  keyItem,
  manifestMetaSize,
  num,
  optNum,
  type RawPlacement,
  rawChunkItem,
  str,
  toManifest,
} from './items.ts';
import {
  INLINE_ITEM_LIMIT,
  keys,
  RAW_CHUNK_BYTES,
  rawChunkPrefix,
  TRANSACTION_INLINE_BUDGET,
} from './schema.ts';
import { keyId, type Table } from './table.ts';

/** Where one commit will put each manifest's raw bytes, and whether its chunks are written. */
export interface Placement extends RawPlacement {
  record: ManifestRecord;
  /** Chunk items of this incarnation exist (written by this commit). */
  written: boolean;
  /** A manifest item naming this incarnation was written: its chunks must stay. */
  used: boolean;
  /** The incarnation's blob user items exist (blob-users.ts), written by this commit. */
  usersWritten: boolean;
}

/** Inline where the item stays under the limit and the transaction under 4 MB; chunks otherwise. */
export function placeManifests(manifests: ManifestRecord[]): Map<Digest, Placement> {
  const placements = new Map<Digest, Placement>();
  let inlineBudget = TRANSACTION_INLINE_BUDGET;
  for (const record of manifests) {
    if (placements.has(record.digest)) continue;
    const meta = manifestMetaSize(record);
    if (meta > INLINE_ITEM_LIMIT) {
      // Only a manifest with tens of thousands of layers gets here; DynamoDB would refuse it.
      throw new Error(`manifest ${record.digest} lists too many blobs for one catalog item`);
    }
    const inline =
      meta + record.raw.byteLength <= INLINE_ITEM_LIMIT && record.raw.byteLength <= inlineBudget;
    if (inline) inlineBudget -= record.raw.byteLength;
    placements.set(record.digest, {
      record,
      incarnation: randomUUID(),
      chunks: inline ? 0 : Math.max(1, Math.ceil(record.raw.byteLength / RAW_CHUNK_BYTES)),
      written: false,
      used: false,
      usersWritten: false,
    });
  }
  return placements;
}

/** Writes the chunk items of a placement once; they are invisible until a manifest names them. */
export async function writeChunks(table: Table, placement: Placement): Promise<void> {
  if (placement.chunks === 0 || placement.written) return;
  const { record, incarnation } = placement;
  const requests = Array.from({ length: placement.chunks }, (_, index) => ({
    PutRequest: {
      Item: rawChunkItem(
        record.digest,
        incarnation,
        index,
        record.raw.subarray(index * RAW_CHUNK_BYTES, (index + 1) * RAW_CHUNK_BYTES),
      ),
    },
  }));
  placement.written = true;
  await table.batchWrite(requests);
}

export async function deleteChunks(
  table: Table,
  digest: Digest,
  incarnation: string,
  chunks: number,
): Promise<void> {
  if (chunks === 0) return;
  await table.batchWrite(
    Array.from({ length: chunks }, (_, index) => ({
      DeleteRequest: { Key: keyItem(keys.rawChunk(digest, incarnation, index)) },
    })),
  );
}

/** Chunks this commit wrote but no stored manifest names: removed, best effort. */
export async function dropUnusedChunks(table: Table, placements: Iterable<Placement>) {
  for (const p of placements) {
    if (!p.written || p.used) continue;
    await deleteChunks(table, p.record.digest, p.incarnation, p.chunks).catch(() => {
      // Leftover chunks of an unused incarnation are never read; a failed cleanup only wastes space.
    });
  }
}

/**
 * The record for a manifest item, fetching chunks when they are not already at hand (a Scan
 * brings them along). Answers undefined when the chunks of the item's incarnation are not
 * all there: the manifest was deleted (or re-stored) meanwhile, and the caller re-reads.
 */
export async function assembleManifest(
  table: Table,
  item: Item,
  chunksAtHand?: Map<string, Item[]>,
): Promise<ManifestRecord | undefined> {
  const chunks = optNum(item, 'rawChunks') ?? 0;
  if (chunks === 0) {
    const raw = item.raw?.B;
    if (!raw) throw new Error(`manifest item ${str(item, 'digest')} has no raw bytes`);
    return toManifest(item, raw);
  }
  const digest = str(item, 'digest') as Digest;
  const incarnation = str(item, 'inc');
  let parts = chunksAtHand?.get(chunkGroup(digest, incarnation));
  if (!parts || parts.length !== chunks) {
    parts = await table.query({
      KeyConditionExpression: 'pk = :pk AND begins_with(sk, :prefix)',
      ExpressionAttributeValues: {
        ':pk': { S: keys.manifest(digest).pk },
        ':prefix': { S: rawChunkPrefix(incarnation) },
      },
    });
  }
  if (parts.length !== chunks) return undefined;
  const ordered = [...parts].sort((a, b) => num(a, 'index') - num(b, 'index'));
  const raw = Buffer.concat(ordered.map((p) => p.data?.B ?? new Uint8Array()));
  if (raw.byteLength !== num(item, 'rawSize')) return undefined;
  return toManifest(item, raw);
}

/** Reads one manifest with its raw bytes; re-reads when a delete or re-store raced the read. */
export async function readManifest(
  table: Table,
  digest: Digest,
): Promise<ManifestRecord | undefined> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const item = await table.get(keys.manifest(digest));
    if (!item) return undefined;
    const record = await assembleManifest(table, item);
    if (record) return record;
  }
  throw new Error(`manifest ${digest} keeps changing while being read`);
}

/** Many manifests by digest, in one consistent batch read plus chunk queries where needed. */
export async function readManifests(table: Table, digests: Digest[]): Promise<ManifestRecord[]> {
  const items = await table.batchGet(digests.map((d) => keys.manifest(d)));
  const records: ManifestRecord[] = [];
  for (const digest of new Set(digests)) {
    const item = items.get(keyId(keys.manifest(digest)));
    if (!item) continue;
    const record = (await assembleManifest(table, item)) ?? (await readManifest(table, digest));
    if (record) records.push(record);
  }
  return records;
}

/** Groups scanned chunk items by manifest and incarnation, for assembleManifest. */
export function groupChunks(items: Item[]): Map<string, Item[]> {
  const groups = new Map<string, Item[]>();
  for (const item of items) {
    const group = chunkGroup(str(item, 'digest') as Digest, str(item, 'inc'));
    const list = groups.get(group);
    if (list) list.push(item);
    else groups.set(group, [item]);
  }
  return groups;
}

function chunkGroup(digest: Digest, incarnation: string): string {
  return `${digest}#${incarnation}`;
}
