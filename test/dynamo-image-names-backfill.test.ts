/**
 * Tables from before image entries existed: until the backfill has written its marker, the
 * catalog reads the old way (Scans), so `image ls` never comes back empty after an upgrade; the
 * backfill (run by maintenance) writes the summaries and name copies, after which reads are
 * Queries again and answer the same.
 */
import { DeleteItemCommand, PutItemCommand, QueryCommand } from '@aws-sdk/client-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ImageEntry } from '../lib/ports/image-catalog.ts';
import { type AwsBackend, startAwsBackend } from './support/aws-backend.ts';
import { awsEmulators, openAwsAdapters, stopAwsEmulators } from './support/aws-emulators.ts';
import { seedImage } from './support/seed-images.ts';

let backend: AwsBackend;
let table: string;
let before: ImageEntry[];

beforeAll(async () => {
  backend = await startAwsBackend();
  table = backend.table;
  const deps = backend.composition.context;
  for (const [i, name] of ['old-one', 'old-two'].entries()) {
    await seedImage(deps, {
      name,
      layers: [[`${name}-layer`, 1_000]],
      tags: [
        [`docker.io/library/${name}`, 'latest'],
        ['localhost:5000/shared', name],
      ],
      digestRef: `docker.io/library/${name}`,
      now: 1_000 + i,
    });
  }
  before = await backend.catalog.listImageEntries();
  await makeItLookOld();
}, 120_000);

afterAll(async () => {
  await backend?.close();
  await stopAwsEmulators();
});

/** The IMAGES partition as the code before entries left it: bare lookups, no copies, no marker. */
async function makeItLookOld() {
  const client = (await awsEmulators()).dynamo.client();
  const { Items = [] } = await client.send(
    new QueryCommand({
      TableName: table,
      KeyConditionExpression: 'pk = :pk',
      ExpressionAttributeValues: { ':pk': { S: 'IMAGES' } },
    }),
  );
  for (const item of Items) {
    const sk = item.sk!.S!;
    if (sk === 'ENTRIES_READY' || /#(TAG|REF)#/.test(sk)) {
      await client.send(
        new DeleteItemCommand({ TableName: table, Key: { pk: item.pk!, sk: item.sk! } }),
      );
    } else if (sk.startsWith('DIGEST#')) {
      const { pk, kind, manifest } = item;
      await client.send(
        new PutItemCommand({
          TableName: table,
          Item: { pk: pk!, sk: item.sk!, kind: kind!, manifest: manifest! },
        }),
      );
    }
  }
  client.destroy();
}

/** A catalog of its own, as a new Lambda container would open it (nothing cached). */
async function freshCatalog() {
  return openAwsAdapters(await awsEmulators(), { bucket: 'unused', table });
}

describe('image entries backfill', () => {
  it('reads the old way until the backfill ran, then by Query, answering the same', async () => {
    expect(before).toHaveLength(2);
    expect(before.flatMap((e) => e.tags)).toHaveLength(4);

    const old = await freshCatalog();
    old.catalog.requests.reset();
    expect(await old.catalog.listImageEntries()).toEqual(before);
    expect(old.catalog.requests.byOperation()).toHaveProperty('Scan');
    old.close();

    expect(await backend.catalog.backfillImageEntries()).toBe(2 + 4 + 2);
    expect(await backend.catalog.backfillImageEntries()).toBe(0);

    const upgraded = await freshCatalog();
    upgraded.catalog.requests.reset();
    expect(await upgraded.catalog.listImageEntries()).toEqual(before);
    expect(
      await upgraded.catalog.findImageEntries(before[0]!.manifest.digest.slice(7, 19)),
    ).toEqual([before[0]]);
    expect(upgraded.catalog.requests.byOperation()).not.toHaveProperty('Scan');
    upgraded.close();
  });

  it('runs as part of the scheduled maintenance pass', async () => {
    await makeItLookOld();
    await backend.composition.operations.maintain();
    const upgraded = await freshCatalog();
    upgraded.catalog.requests.reset();
    expect(await upgraded.catalog.listImageEntries()).toEqual(before);
    expect(upgraded.catalog.requests.byOperation()).not.toHaveProperty('Scan');
    upgraded.close();
  });
});
