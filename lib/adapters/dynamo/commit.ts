/**
 * commitImage on DynamoDB: a consistent read of what the commit replaces, then one
 * TransactWriteItems that stores the manifests, touches every blob on condition it is live, and
 * writes the tag, the digest ref and the reference counters on condition that nothing they
 * replace changed since the read. A lost race re-reads and tries again; a blob that is not live
 * ends the commit with BlobNotLiveError and nothing written.
 *
 * Images with more blobs than one transaction holds take the path in `commitLarge`, whose
 * safety argument is written there.
 */
import type { TransactWriteItem } from '@aws-sdk/client-dynamodb';
import type { Digest } from '../../digest.ts';
import { BlobNotLiveError, NotFoundError } from '../../errors.ts';
import type { ImageCommit } from '../../ports/image-catalog.ts';
import { dropUnusedUsers, writeBlobUsers } from './blob-users.ts';
import { nameCopyActions, summaryItem } from './image-entries.ts';
import {
  av,
  digestRefItem,
  type Item,
  keyItem,
  manifestItem,
  optStr,
  str,
  tagItem,
} from './items.ts';
import { dropUnusedChunks, type Placement, placeManifests, writeChunks } from './manifests.ts';
import {
  counterActions,
  deleteManifestIfUnreferenced,
  mergeDelta,
  referenceDelta,
  slotsOf,
  unchangedCondition,
} from './references.ts';
import { keys, MAX_TRANSACTION_ACTIONS } from './schema.ts';
import { backoff, CONFLICT_ATTEMPTS, keyId, lostRace, type Table } from './table.ts';

/** What the commit replaces or relies on, read consistently before the transaction. */
interface Snapshot {
  tag?: Item;
  ref?: Item;
  /** Stored manifests among those the commit stores or names (inc, blobs). */
  manifests: Map<Digest, Item>;
}

type Role = { kind: 'blob'; digest: Digest } | { kind: 'other' };

interface Plan {
  actions: TransactWriteItem[];
  roles: Role[];
}

/** Repository, tag and createdAt too: the name copies of what the commit replaces need them. */
const SNAPSHOT_PROJECTION = [
  'pk',
  'sk',
  'kind',
  'manifest',
  'source',
  'digest',
  'blobs',
  'inc',
  'repository',
  'tag',
  'createdAt',
];
/** Blob touches in flight at once on the large path. */
const TOUCH_CONCURRENCY = 16;

export async function commitImage(table: Table, commit: ImageCommit): Promise<void> {
  const placements = placeManifests(commit.manifests);
  try {
    for (let attempt = 0; attempt < CONFLICT_ATTEMPTS; attempt++) {
      if (attempt > 0) await backoff(attempt);
      const snapshot = await readSnapshot(table, commit, placements);
      const required = requiredBlobs(commit, snapshot);
      const plan = planTransaction(table.name, commit, snapshot, placements, []);
      if (plan.actions.length + required.length > MAX_TRANSACTION_ACTIONS) {
        if (await commitLarge(table, commit, snapshot, placements, required)) return;
        continue;
      }
      for (const p of placements.values()) {
        if (snapshot.manifests.has(p.record.digest)) continue;
        await writeChunks(table, p);
        await writeBlobUsers(table, p);
      }
      const full = planTransaction(table.name, commit, snapshot, placements, required);
      const outcome = await table.transact(full.actions);
      if (outcome.ok) {
        for (const p of placements.values()) {
          if (!snapshot.manifests.has(p.record.digest)) p.used = true;
        }
        return;
      }
      if (outcome.failed.some((i) => full.roles[i]?.kind === 'blob')) {
        const notLive = await notLiveBlobs(table, required);
        if (notLive.length > 0) throw new BlobNotLiveError(notLive);
      }
    }
    throw lostRace();
  } finally {
    await dropUnusedChunks(table, placements.values());
    await dropUnusedUsers(table, placements.values());
  }
}

/** Manifests a tag or digest ref names; they must be stored (by this commit or before). */
function namedManifests(commit: ImageCommit): Digest[] {
  return [commit.tag?.manifest, commit.digestRef?.manifest].filter(
    (d): d is Digest => d !== undefined,
  );
}

async function readSnapshot(
  table: Table,
  commit: ImageCommit,
  placements: Map<Digest, Placement>,
): Promise<Snapshot> {
  const tagKey = commit.tag && keys.tag(commit.tag.repository, commit.tag.tag);
  const refKey =
    commit.digestRef && keys.digestRef(commit.digestRef.repository, commit.digestRef.digest);
  const digests = new Set([...placements.keys(), ...namedManifests(commit)]);
  const wanted = [...[tagKey, refKey].filter((k) => k !== undefined)];
  for (const d of digests) wanted.push(keys.manifest(d));
  const items = await table.batchGet(wanted, SNAPSHOT_PROJECTION);
  const manifests = new Map<Digest, Item>();
  for (const d of digests) {
    const item = items.get(keyId(keys.manifest(d)));
    if (item) manifests.set(d, item);
  }
  for (const d of namedManifests(commit)) {
    if (!placements.has(d) && !manifests.has(d)) {
      throw new NotFoundError(`manifest ${d} is not stored`);
    }
  }
  return {
    ...(tagKey && { tag: items.get(keyId(tagKey)) }),
    ...(refKey && { ref: items.get(keyId(refKey)) }),
    manifests,
  };
}

/**
 * Invariant 2 is enforced here, not trusted to callers: the blobs of every manifest the commit
 * stores or points a name at must be live, not only those listed in `blobs`.
 */
function requiredBlobs(commit: ImageCommit, snapshot: Snapshot): Digest[] {
  const required = new Set<Digest>(commit.blobs);
  for (const m of commit.manifests) for (const b of m.blobs) required.add(b);
  for (const d of namedManifests(commit)) {
    const stored = snapshot.manifests.get(d);
    for (const b of stored?.blobs?.L ?? []) if (b.S) required.add(b.S as Digest);
  }
  return [...required];
}

/** The transaction for one attempt; `touch` lists the blobs it touches (none on the large path). */
function planTransaction(
  table: string,
  commit: ImageCommit,
  snapshot: Snapshot,
  placements: Map<Digest, Placement>,
  touch: Digest[],
): Plan {
  const now = Math.trunc(commit.now);
  const plan: Plan = { actions: [], roles: [] };
  const add = (action: TransactWriteItem, role: Role = { kind: 'other' }) => {
    plan.actions.push(action);
    plan.roles.push(role);
  };
  for (const p of placements.values()) {
    const stored = snapshot.manifests.get(p.record.digest);
    const pulled = commit.pulled === p.record.digest;
    if (stored) add(useManifest(table, p.record.digest, stored, now, pulled));
    else {
      add(createManifest(table, p, now, pulled));
      for (const lookup of imageLookups(table, p)) add(lookup);
    }
  }
  for (const d of new Set(namedManifests(commit))) {
    const stored = snapshot.manifests.get(d);
    if (!placements.has(d) && stored) {
      add(useManifest(table, d, stored, now, commit.pulled === d));
    }
  }

  const delta = new Map<Digest, number>();
  if (commit.tag) {
    const item = tagItem({ ...commit.tag, updatedAt: now, checkedAt: now });
    add({ Put: { TableName: table, Item: item, ...unchangedCondition(snapshot.tag) } });
    for (const action of nameCopyActions(table, snapshot.tag, item)) add(action);
    mergeDelta(delta, referenceDelta(slotsOf(snapshot.tag), slotsOf(item)));
  }
  if (commit.digestRef) {
    const r = commit.digestRef;
    const old = snapshot.ref;
    const item = digestRefItem({ ...r, createdAt: now });
    if (old) {
      // createdAt stays as first recorded; the manifest may move (another platform's pull).
      const condition = unchangedCondition(old);
      add({
        Update: {
          TableName: table,
          Key: keyItem(keys.digestRef(r.repository, r.digest)),
          UpdateExpression: 'SET #manifest = :manifest',
          ...condition,
          ExpressionAttributeValues: {
            ...condition.ExpressionAttributeValues,
            ':manifest': av.s(r.manifest),
          },
        },
      });
    } else {
      add({ Put: { TableName: table, Item: item, ...unchangedCondition(undefined) } });
    }
    // The copy keeps the first createdAt, as the ref itself does.
    const kept = old ? { ...item, createdAt: old.createdAt ?? item.createdAt! } : item;
    for (const action of nameCopyActions(table, old, kept)) add(action);
    mergeDelta(delta, referenceDelta(slotsOf(old), slotsOf(item)));
  }
  for (const action of counterActions(table, delta)) add(action);

  for (const digest of touch) add(touchAction(table, digest, now), { kind: 'blob', digest });
  return plan;
}

/** A new manifest item; `pulled` starts its pull count at one (else the attribute is absent). */
function createManifest(
  table: string,
  p: Placement,
  now: number,
  pulled = false,
): TransactWriteItem {
  return {
    Put: {
      TableName: table,
      Item: { ...manifestItem(p.record, p, now), ...(pulled && { pulls: av.n(1) }) },
      ConditionExpression: 'attribute_not_exists(pk)',
    },
  };
}

/**
 * Bumps lastUsedAt of a stored manifest, on condition it is still the incarnation read; a pull's
 * count is an ADD in the same write, so counting costs no request.
 */
function useManifest(
  table: string,
  digest: Digest,
  stored: Item,
  now: number,
  pulled = false,
): TransactWriteItem {
  return {
    Update: {
      TableName: table,
      Key: keyItem(keys.manifest(digest)),
      UpdateExpression: pulled
        ? 'SET #lastUsedAt = :now ADD #pulls :one'
        : 'SET #lastUsedAt = :now',
      ConditionExpression: '#inc = :inc',
      ExpressionAttributeNames: {
        '#lastUsedAt': 'lastUsedAt',
        '#inc': 'inc',
        ...(pulled && { '#pulls': 'pulls' }),
      },
      ExpressionAttributeValues: {
        ':now': av.n(now),
        ':inc': av.s(str(stored, 'inc')),
        ...(pulled && { ':one': av.n(1) }),
      },
    },
  };
}

/** The image's CONFIG# lookup and its entry's summary (image-entries.ts), with the manifest. */
function imageLookups(table: string, p: Placement): TransactWriteItem[] {
  const image = p.record.image;
  if (!image) return [];
  const digest = p.record.digest;
  const lookup = keyItem(keys.imageByConfig(image.configDigest, digest));
  return [
    { Put: { TableName: table, Item: { ...lookup, kind: av.s('image'), manifest: av.s(digest) } } },
    { Put: { TableName: table, Item: summaryItem({ ...p.record, image }) } },
  ];
}

export function touchAction(table: string, digest: Digest, now: number): TransactWriteItem {
  return { Update: { TableName: table, Key: keyItem(keys.blob(digest)), ...touchExpression(now) } };
}

/** The one conditional touch: live records only; absent and deleting ones fail the condition. */
export function touchExpression(now: number) {
  return {
    UpdateExpression: 'SET #touchedAt = :now ADD #generation :one',
    ConditionExpression: '#state = :live',
    ExpressionAttributeNames: {
      '#touchedAt': 'touchedAt',
      '#generation': 'generation',
      '#state': 'state',
    },
    ExpressionAttributeValues: { ':now': av.n(now), ':one': av.n(1), ':live': av.s('live') },
  };
}

async function notLiveBlobs(table: Table, digests: Digest[]): Promise<Digest[]> {
  const records = await table.batchGet(digests.map(keys.blob), ['pk', 'sk', 'state']);
  return digests
    .filter((d) => optStr(records.get(keyId(keys.blob(d))) ?? {}, 'state') !== 'live')
    .sort();
}

/**
 * More blobs than one transaction holds. Touching them in earlier writes and committing the tag
 * in a last transaction is only safe in this order, because of how the collector works (lib/gc.ts
 * reads blob records with their generations BEFORE it lists the manifests it marks from):
 *
 * 1. Check every blob is live (consistent reads): an early, write-free BlobNotLiveError.
 * 2. Store the manifests (each with its image lookups, one small transaction; an existing one is
 *    kept) and note their incarnations.
 * 3. Touch every blob, conditional on live. Any failure: remove the manifests step 2 created
 *    (if still unreferenced) and fail with BlobNotLiveError.
 * 4. One transaction: the tag, the digest ref, the counters, and lastUsedAt of each manifest on
 *    condition that it is still the incarnation noted in step 2.
 *
 * Why no collector can delete a blob the tag needs: take a blob b touched in step 3 and a
 * collector C. If C read b's record before our touch, C's conditional live -> deleting expects
 * the old generation and fails, or it came first and our touch fails (step 3 aborts). If C read
 * b's record after our touch, C lists manifests later still, so after step 2; the condition in
 * step 4 proves the manifest was not deleted in between (a delete and re-store would change the
 * incarnation), so C's listing contains it and marks b. Touching first and storing the manifest
 * afterwards would NOT be safe: a collector reading b after the touch and the manifests before
 * the store would sweep b with the generation it saw.
 */
async function commitLarge(
  table: Table,
  commit: ImageCommit,
  snapshot: Snapshot,
  placements: Map<Digest, Placement>,
  required: Digest[],
): Promise<boolean> {
  const notLive = await notLiveBlobs(table, required);
  if (notLive.length > 0) throw new BlobNotLiveError(notLive);

  const now = Math.trunc(commit.now);
  const created: Digest[] = [];
  for (const p of placements.values()) {
    const digest = p.record.digest;
    if (snapshot.manifests.has(digest)) continue;
    await writeChunks(table, p);
    await writeBlobUsers(table, p);
    const outcome = await table.transact([
      createManifest(table.name, p, now),
      ...imageLookups(table.name, p),
    ]);
    if (outcome.ok) {
      p.used = true;
      created.push(digest);
      snapshot.manifests.set(digest, { inc: av.s(p.incarnation) });
    } else {
      return false; // stored by someone else meanwhile (or a conflict): start over
    }
  }

  const failed: Digest[] = [];
  let next = 0;
  const worker = async () => {
    while (next < required.length) {
      const digest = required[next++]!;
      const touched = await touchOne(table, digest, now);
      if (!touched) failed.push(digest);
    }
  };
  await Promise.all(Array.from({ length: TOUCH_CONCURRENCY }, worker));
  if (failed.length > 0) {
    for (const digest of created) await deleteManifestIfUnreferenced(table, digest);
    throw new BlobNotLiveError(failed.sort());
  }

  const plan = planTransaction(table.name, commit, snapshot, placements, []);
  const outcome = await table.transact(plan.actions);
  return outcome.ok;
}

async function touchOne(table: Table, digest: Digest, now: number): Promise<boolean> {
  const { UpdateExpression, ...expression } = touchExpression(now);
  const outcome = await table.update(keys.blob(digest), UpdateExpression, expression);
  return outcome.ok;
}
