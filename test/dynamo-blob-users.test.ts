/**
 * The blob -> manifest index on tables from before it existed: until maintenance has written the
 * missing user items and the marker, `referencedBlobs` marks from every manifest (a Scan) and
 * answers right; maintenance writes what is missing, drops leftovers of commits that died
 * halfway once they are old, and declares the index complete only after the upgrade settled.
 * Afterwards the answer is the same, from one Query per blob.
 */
import {
  DeleteItemCommand,
  type DynamoDBClient,
  GetItemCommand,
  PutItemCommand,
  ScanCommand,
} from '@aws-sdk/client-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LEFTOVER_USER_AGE_MS, UPGRADE_SETTLE_MS } from '../lib/adapters/dynamo/blob-users.ts';
import { type Digest, sha256 } from '../lib/digest.ts';
import { type AwsBackend, startAwsBackend } from './support/aws-backend.ts';
import { awsEmulators, openAwsAdapters, stopAwsEmulators } from './support/aws-emulators.ts';
import { type SeededImage, seedImage } from './support/seed-images.ts';

let backend: AwsBackend;
let table: string;
let client: DynamoDBClient;
let images: SeededImage[];

beforeAll(async () => {
  backend = await startAwsBackend();
  table = backend.table;
  client = (await awsEmulators()).dynamo.client();
  const deps = backend.composition.context;
  images = [];
  for (const [i, name] of ['one', 'two'].entries()) {
    images.push(
      await seedImage(deps, {
        name,
        // Both images share `base`.
        layers: [
          ['base', 1_000],
          [`${name}-layer`, 1_000],
        ],
        tags: [[`docker.io/library/${name}`, 'latest']],
        now: 1_000 + i,
      }),
    );
  }
}, 120_000);

afterAll(async () => {
  client?.destroy();
  await backend?.close();
  await stopAwsEmulators();
});

async function userItems(): Promise<Record<string, unknown>[]> {
  const { Items = [] } = await client.send(
    new ScanCommand({
      TableName: table,
      ConsistentRead: true,
      FilterExpression: 'kind = :k',
      ExpressionAttributeValues: { ':k': { S: 'blob-user' } },
    }),
  );
  return Items;
}

const marker = (sk: string) => ({ pk: { S: 'IMAGES' }, sk: { S: sk } });

/** The table as the code before the index left it: no user items, no marker. */
async function makeItLookOld() {
  for (const item of await userItems()) {
    const { pk, sk } = item as { pk: { S: string }; sk: { S: string } };
    await client.send(new DeleteItemCommand({ TableName: table, Key: { pk, sk } }));
  }
  for (const sk of ['BLOB_USERS_READY', 'BLOB_USERS_SINCE']) {
    await client.send(new DeleteItemCommand({ TableName: table, Key: marker(sk) }));
  }
}

/** A user item of a commit that died before storing its manifest, `ageMs` old. */
async function leftover(blob: Digest, ageMs: number) {
  const manifest = sha256(`never-stored-${ageMs}`);
  await client.send(
    new PutItemCommand({
      TableName: table,
      Item: {
        pk: { S: `BLOB#${blob}` },
        sk: { S: `USER#${manifest}#inc-${ageMs}` },
        kind: { S: 'blob-user' },
        manifest: { S: manifest },
        inc: { S: `inc-${ageMs}` },
        createdAt: { N: String(Date.now() - ageMs) },
      },
    }),
  );
}

async function hasMarker(sk: string): Promise<boolean> {
  const { Item } = await client.send(new GetItemCommand({ TableName: table, Key: marker(sk) }));
  return Item !== undefined;
}

/** A catalog of its own, as a new Lambda container would open it (nothing cached). */
async function freshCatalog() {
  return openAwsAdapters(await awsEmulators(), { bucket: 'unused', table });
}

describe('blob -> manifest index on an upgraded table', () => {
  it('answers by Scan until maintenance completed it, then by Query, the same', async () => {
    const [one, two] = images as [SeededImage, SeededImage];
    const asked = [...one.blobs, ...two.blobs].map((b) => b.digest);
    const stranger = sha256('not a stored blob');
    const everything = new Set(asked);
    // The index as new code keeps it: one user per distinct blob of each manifest.
    expect(await userItems()).toHaveLength(one.blobs.length + two.blobs.length);

    await makeItLookOld();
    const old = await freshCatalog();
    old.catalog.requests.reset();
    expect(await old.catalog.referencedBlobs([...asked, stranger])).toEqual(everything);
    expect(old.catalog.requests.byOperation()).toHaveProperty('Scan');
    old.close();

    const base = one.layers[0]!.digest;
    await leftover(base, LEFTOVER_USER_AGE_MS + 60_000);
    await leftover(base, 60_000);
    // First pass: writes what is missing, drops the old leftover, keeps the young one (it may
    // be a commit under way), and starts the settling time instead of declaring completion.
    await backend.catalog.backfillImageEntries();
    const users = await userItems();
    expect(users).toHaveLength(one.blobs.length + two.blobs.length + 1);
    expect(users.filter((u) => JSON.stringify(u).includes('never-stored'))).toHaveLength(0);
    expect(await hasMarker('BLOB_USERS_READY')).toBe(false);
    // Nothing missing now, but a worker of the old version may still be committing.
    expect(await backend.catalog.backfillImageEntries()).toBe(0);
    expect(await hasMarker('BLOB_USERS_READY')).toBe(false);

    // The settling time has passed (the first pass's stamp moved back, as time would move it).
    await client.send(
      new PutItemCommand({
        TableName: table,
        Item: {
          ...marker('BLOB_USERS_SINCE'),
          kind: { S: 'marker' },
          at: { N: String(Date.now() - UPGRADE_SETTLE_MS - 1_000) },
        },
      }),
    );
    expect(await backend.catalog.backfillImageEntries()).toBe(0);
    expect(await hasMarker('BLOB_USERS_READY')).toBe(true);

    const upgraded = await freshCatalog();
    upgraded.catalog.requests.reset();
    expect(await upgraded.catalog.referencedBlobs([...asked, stranger])).toEqual(everything);
    const operations = upgraded.catalog.requests.byOperation();
    expect(operations).not.toHaveProperty('Scan');
    // One Query per distinct blob asked about, and the marker read once.
    expect(operations).toEqual({ GetItem: 1, Query: everything.size + 1 });
    upgraded.close();
  });
});
