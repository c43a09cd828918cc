import { type AttributeValue, GetItemCommand, QueryCommand } from '@aws-sdk/client-dynamodb';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { DynamoCatalog } from '../lib/adapters/dynamo-catalog.ts';
import { parseAwsSdkSettings } from '../lib/config/aws-sdk.ts';
import { ConfigError, parseServeArgs } from '../lib/config.ts';
import { type Digest, digestHex, sha256 } from '../lib/digest.ts';
import { BlobNotLiveError } from '../lib/errors.ts';
import { resolveImage } from '../lib/images.ts';
import type { ManifestRecord } from '../lib/ports/image-catalog.ts';
import { catalogConformance } from './conformance/catalog-conformance.ts';
import {
  addBlobs,
  commitOf,
  type ImageFixture,
  imageFixture,
} from './conformance/image-catalog-suite.ts';
import { type DynamoDbLocal, startDynamoDbLocal } from './support/dynamodb-local.ts';

const REPO = 'docker.io/library/alpine';
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

let server: DynamoDbLocal;

beforeAll(async () => {
  server = await startDynamoDbLocal();
});

afterAll(async () => {
  await server?.stop();
});

/** A fresh table per catalog: tests never see each other's items. */
async function freshCatalog(): Promise<{ catalog: DynamoCatalog; table: string }> {
  const table = await server.createTable();
  return { catalog: new DynamoCatalog({ client: server.client(), tableName: table }), table };
}

catalogConformance('DynamoCatalog (DynamoDB Local)', async () => {
  const { catalog, table } = await freshCatalog();
  const others: DynamoCatalog[] = [];
  return {
    store: catalog,
    another: async () => {
      others.push(new DynamoCatalog({ client: server.client(), tableName: table }));
      return others.at(-1)!;
    },
    cleanup: async () => {
      for (const other of [catalog, ...others]) other.close();
    },
  };
});

/** An image manifest naming `layers` made-up layers, raw padded to at least `rawBytes`. */
function bigImage(seed: string, layers: number, rawBytes = 0): ImageFixture {
  const config = sha256(`${seed}/config`);
  const layerDigests = Array.from({ length: layers }, (_, i) => sha256(`${seed}/layer-${i}`));
  const filler = 'ü'.repeat(Math.max(0, Math.ceil((rawBytes - layers * 90) / 2)));
  const json = `{"schemaVersion":2,"mediaType":"${OCI_MANIFEST}","config":{"digest":"${config}"},
    "layers":[${layerDigests.map((d) => `{"digest":"${d}"}`).join(',')}],"annotations":{"x":"${filler}"}}`;
  const padded = new TextEncoder().encode(`..${json}..`);
  const raw = padded.subarray(2, padded.length - 2);
  const manifest: ManifestRecord = {
    digest: sha256(raw),
    mediaType: OCI_MANIFEST,
    raw,
    blobs: [config, ...layerDigests],
    children: [],
    image: { configDigest: config, os: 'linux', architecture: 'amd64', size: 1, labels: {} },
    createdAt: 1,
    lastUsedAt: 1,
  };
  return { config, layers: layerDigests, manifest };
}

describe('DynamoCatalog specifics', () => {
  let catalog: DynamoCatalog;
  let table: string;
  const raw = () => server.client();

  beforeEach(async () => {
    ({ catalog, table } = await freshCatalog());
  });
  afterEach(() => catalog.close());

  async function refsOf(digest: Digest): Promise<number> {
    const client = raw();
    try {
      const { Item } = await client.send(
        new GetItemCommand({
          TableName: table,
          Key: { pk: { S: `MANIFEST#${digest}` }, sk: { S: 'REFS' } },
          ConsistentRead: true,
        }),
      );
      return Number(Item?.refs?.N ?? 0);
    } finally {
      client.destroy();
    }
  }

  /** Sort keys of every item in a partition (paginated: chunk items fill 1 MB pages fast). */
  async function itemsUnder(pk: string): Promise<string[]> {
    const client = raw();
    const sortKeys: string[] = [];
    try {
      let start: Record<string, AttributeValue> | undefined;
      do {
        const page = await client.send(
          new QueryCommand({
            TableName: table,
            KeyConditionExpression: 'pk = :pk',
            ExpressionAttributeValues: { ':pk': { S: pk } },
            ConsistentRead: true,
            ExclusiveStartKey: start,
          }),
        );
        sortKeys.push(...(page.Items ?? []).map((item) => item.sk?.S ?? ''));
        start = page.LastEvaluatedKey;
      } while (start);
      return sortKeys;
    } finally {
      client.destroy();
    }
  }

  it('commits an image with more blobs than one transaction holds', async () => {
    const image = bigImage('wide', 149);
    await addBlobs(catalog, image, 10);
    catalog.requests.reset();
    await catalog.commitImage(commitOf(image, 'wide', 20));
    expect(await catalog.getTag(REPO, 'wide')).toMatchObject({ manifest: image.manifest.digest });
    for (const digest of image.manifest.blobs) {
      expect(await catalog.getBlob(digest)).toMatchObject({ generation: 2, touchedAt: 20 });
    }
    expect(catalog.requests.byOperation()).toMatchObject({ UpdateItem: 150 });
    const stored = await catalog.getManifest(image.manifest.digest);
    expect(stored?.blobs).toHaveLength(150);
    expect(
      (await resolveImage(catalog, digestHex(image.config).slice(0, 12))).manifests,
    ).toHaveLength(1);
  });

  it('refuses a wide image with one blob being collected and leaves no manifest', async () => {
    const image = bigImage('wide-gc', 120);
    await addBlobs(catalog, image, 10);
    const victim = image.layers[77]!;
    expect(await catalog.beginBlobDeletion(victim, 1)).toBe(true);
    const failure = catalog.commitImage(commitOf(image, 'wide', 20));
    await expect(failure).rejects.toBeInstanceOf(BlobNotLiveError);
    await expect(failure).rejects.toMatchObject({ digests: [victim] });
    expect(await catalog.listTags()).toEqual([]);
    expect(await catalog.listManifests()).toEqual([]);
    expect(await catalog.listImages()).toEqual([]);
  });

  it('never tags a wide image whose blobs a concurrent collector swept', async () => {
    // What shows the race happened: transitions tried while the commit was in flight, and
    // conditional writes that lost (a commit refused, a transition whose generation was stale).
    let commitInFlight = false;
    const seen = { transitionsDuringCommit: 0, commitsRefused: 0, transitionsRefused: 0 };
    // A collector with grace zero, as lib/gc.ts runs it: records, then roots, then transitions.
    const collect = async () => {
      const snapshot = await catalog.listBlobs();
      const marked = new Set((await catalog.listManifests()).flatMap((m) => m.blobs));
      for (const record of snapshot) {
        if (record.state !== 'live' || marked.has(record.digest)) continue;
        if (commitInFlight) seen.transitionsDuringCommit++;
        if (await catalog.beginBlobDeletion(record.digest, record.generation)) {
          await catalog.finishBlobDeletion(record.digest);
        } else seen.transitionsRefused++;
      }
    };
    const image = bigImage('wide-race', 110);
    let committed = 0;
    for (let round = 0; round < 6; round++) {
      await catalog.deleteTag(REPO, 'race');
      await catalog.deleteDigestRef(REPO, image.manifest.digest);
      await catalog.deleteManifestIfUnreferenced(image.manifest.digest);
      for (const digest of image.manifest.blobs) await catalog.addBlob({ digest, size: 1 }, round);
      commitInFlight = true;
      const [commit] = await Promise.allSettled([
        catalog.commitImage(commitOf(image, 'race', 100 + round)).finally(() => {
          commitInFlight = false;
        }),
        new Promise((resolve) => setTimeout(resolve, round * 15)).then(collect),
      ]);
      if (commit.status === 'rejected') {
        seen.commitsRefused++;
        expect(commit.reason).toBeInstanceOf(BlobNotLiveError);
        expect(await catalog.getTag(REPO, 'race')).toBeUndefined();
        continue;
      }
      committed++;
      for (const digest of image.manifest.blobs) {
        expect(await catalog.getBlob(digest), `round ${round}`).toMatchObject({ state: 'live' });
      }
    }
    expect(committed).toBeGreaterThan(0);
    console.info('race:', JSON.stringify({ committed, ...seen }));
    expect(seen.transitionsDuringCommit).toBeGreaterThan(0);
    expect(seen.commitsRefused + seen.transitionsRefused).toBeGreaterThan(0);
  });

  it('keeps reference counts right while a tag is re-pointed concurrently', async () => {
    const images = ['r0', 'r1', 'r2'].map((seed) => imageFixture(seed));
    for (const image of images) await addBlobs(catalog, image, 1);
    for (const image of images) {
      await catalog.commitImage({ manifests: [image.manifest], blobs: [], now: 2 });
    }
    await Promise.all(
      Array.from({ length: 24 }, (_, i) => {
        const image = images[i % images.length]!;
        return catalog.commitImage({ ...commitOf(image, 'latest', 10 + i), digestRef: undefined });
      }),
    );
    const tagged = (await catalog.getTag(REPO, 'latest'))!.manifest;
    for (const image of images) {
      const digest = image.manifest.digest;
      // Each tag slot (manifest and source) counts once.
      expect(await refsOf(digest), digest).toBe(digest === tagged ? 2 : 0);
    }
    for (const image of images.filter((i) => i.manifest.digest !== tagged)) {
      expect(await catalog.deleteManifestIfUnreferenced(image.manifest.digest)).toBe(true);
    }
    expect(await catalog.deleteManifestIfUnreferenced(tagged)).toBe(false);
    await catalog.deleteTag(REPO, 'latest');
    expect(await refsOf(tagged)).toBe(0);
    expect(await catalog.deleteManifestIfUnreferenced(tagged)).toBe(true);
    expect(await catalog.listManifests()).toEqual([]);
    // Only the markers a new table starts with are left, and no blob names a manifest.
    expect(await itemsUnder('IMAGES')).toEqual(['BLOB_USERS_READY', 'ENTRIES_READY']);
    for (const image of images) {
      for (const blob of image.manifest.blobs)
        expect(await itemsUnder(`BLOB#${blob}`)).toEqual(['BLOB']);
    }
  });

  it('counts a reference to a digest that is stored only later', async () => {
    const image = imageFixture('later');
    const index = sha256('index-stored-later');
    await addBlobs(catalog, image, 1);
    await catalog.commitImage({
      ...commitOf(image, 'multi', 2),
      tag: { repository: REPO, tag: 'multi', manifest: image.manifest.digest, source: index },
    });
    expect(await refsOf(index)).toBe(1);
    await catalog.putPin({ name: 'p', manifest: image.manifest.digest, note: '', createdAt: 1 });
    await catalog.putPin({ name: 'p', manifest: index, note: 'moved', createdAt: 2 });
    expect(await refsOf(index)).toBe(2);
    await catalog.deletePin('p');
    await catalog.deleteTag(REPO, 'multi');
    expect(await refsOf(index)).toBe(0);
  });

  it('round-trips a manifest larger than one item, byte for byte, and deletes its chunks', async () => {
    const image = bigImage('large', 3, 1_500_000);
    expect(image.manifest.raw.byteLength).toBeGreaterThan(1_400_000);
    await addBlobs(catalog, image, 1);
    await catalog.commitImage(commitOf(image, 'large', 2));
    const digest = image.manifest.digest;
    for (const record of [
      await catalog.getManifest(digest),
      (await catalog.listManifests())[0],
      (await catalog.listImages())[0],
    ]) {
      expect(Buffer.from(record!.raw).equals(Buffer.from(image.manifest.raw))).toBe(true);
      expect(sha256(record!.raw)).toBe(digest);
    }
    // Image entries carry no raw bytes: a chunked manifest resolves like any other.
    expect((await resolveImage(catalog, digestHex(digest).slice(0, 12))).manifests[0]?.digest).toBe(
      digest,
    );
    const chunkKeys = (await itemsUnder(`MANIFEST#${digest}`)).filter((sk) =>
      sk.startsWith('RAW#'),
    );
    expect(chunkKeys.length).toBe(Math.ceil(image.manifest.raw.byteLength / 300_000));
    // A second commit of the same manifest keeps the stored chunks and leaves none of its own.
    await catalog.commitImage(commitOf(image, 'again', 3));
    expect((await itemsUnder(`MANIFEST#${digest}`)).filter((sk) => sk.startsWith('RAW#'))).toEqual(
      chunkKeys,
    );

    await catalog.deleteTag(REPO, 'large');
    await catalog.deleteTag(REPO, 'again');
    await catalog.deleteDigestRef(REPO, digest);
    expect(await catalog.deleteManifestIfUnreferenced(digest)).toBe(true);
    expect(await itemsUnder(`MANIFEST#${digest}`)).toEqual([]);
    expect(await catalog.getManifest(digest)).toBeUndefined();
  });

  it('keeps a deleted blob as a tombstone that listings skip and a new life counts on from', async () => {
    const digest = sha256('tombstone');
    await catalog.addBlob({ digest, size: 5, unpackedSize: 9 }, 1);
    await catalog.touchBlob(digest, 2);
    expect(await catalog.beginBlobDeletion(digest, 2)).toBe(true);
    await catalog.finishBlobDeletion(digest);
    expect(await catalog.listBlobs()).toEqual([]);
    expect(await catalog.getBlob(digest)).toBeUndefined();
    expect(await catalog.claimOrphanBlob(digest, 5, 3)).toBe(true);
    expect(await catalog.getBlob(digest)).toMatchObject({ state: 'deleting', generation: 3 });
    await catalog.finishBlobDeletion(digest);
    expect(await catalog.addBlob({ digest, size: 5 }, 4)).toBe('live');
    expect(await catalog.listBlobs()).toEqual([
      { digest, size: 5, unpackedSize: 9, state: 'live', generation: 4, touchedAt: 4 },
    ]);
  });

  it('counts DynamoDB requests: a small pull commits in one read and one transaction', async () => {
    const image = imageFixture('counted');
    await addBlobs(catalog, image, 1);
    expect(catalog.requests.byOperation()).toEqual({ UpdateItem: 3 });
    catalog.requests.reset();
    // A new manifest's blob users go first, in one batch (blob-users.ts).
    await catalog.commitImage(commitOf(image, 'latest', 2));
    expect(catalog.requests.byOperation()).toEqual({
      BatchGetItem: 1,
      BatchWriteItem: 1,
      TransactWriteItems: 1,
    });
    catalog.requests.reset();
    // Stored already: tagging it again writes no users.
    await catalog.commitImage(commitOf(image, 'again', 3));
    expect(catalog.requests.byOperation()).toEqual({ BatchGetItem: 1, TransactWriteItems: 1 });
  });

  it('lists watches and pauses with one Query each; budget hours carry a TTL of a day', async () => {
    const names = ['docker.io/library/b:1', 'docker.io/library/a:1'];
    for (const name of names) {
      const watch = { name, registry: 'docker.io', everyMs: 60_000, platforms: [], pin: false };
      await catalog.putWatch(watch, 1, 2);
    }
    await catalog.pauseRegistry({ registry: 'docker.io', until: 5, reason: '429' });
    catalog.requests.reset();
    expect((await catalog.listWatches()).map((w) => w.name)).toEqual([...names].reverse());
    expect(await catalog.listRegistryPauses()).toHaveLength(1);
    expect(catalog.requests.byOperation()).toEqual({ Query: 2 });
    expect(await itemsUnder('WATCHES')).toEqual(names.map((n) => `WATCH#${n}`).reverse());

    const hour = 1_800 * 3_600_000;
    expect(await catalog.takeBackgroundPull('docker.io', hour, 5)).toBe(true);
    const client = raw();
    try {
      const { Item } = await client.send(
        new GetItemCommand({
          TableName: table,
          Key: { pk: { S: 'PULL_BUDGET#docker.io' }, sk: { S: 'HOUR#0000006480000000' } },
          ConsistentRead: true,
        }),
      );
      // The hour's end plus a day, in epoch seconds.
      expect(Item).toMatchObject({
        pulls: { N: '1' },
        ttl: { N: String(6_480_000 + 3_600 + 86_400) },
      });
    } finally {
      client.destroy();
    }
  });
});

describe('AWS backend settings', () => {
  const aws = { IMAGE_CACHE_BUCKET: 'image-cache-blobs', IMAGE_CACHE_TABLE: 'image-cache' };

  it('defaults to the embedded backend and reads --backend aws with its resources', () => {
    expect(parseServeArgs([], aws)).toMatchObject({ backend: 'embedded' });
    expect(parseServeArgs([], aws).aws).toBeUndefined();
    expect(parseServeArgs(['--backend', 'aws'], aws)).toMatchObject({
      backend: 'aws',
      aws: { bucket: 'image-cache-blobs', table: 'image-cache', createResources: false },
    });
    expect(
      parseServeArgs(['--create-resources'], { ...aws, IMAGE_CACHE_BACKEND: 'aws' }).aws,
    ).toEqual({
      bucket: 'image-cache-blobs',
      table: 'image-cache',
      createResources: true,
      sdk: parseAwsSdkSettings({}),
    });
  });

  it.each([
    [['--backend', 'aws'], {}, /IMAGE_CACHE_BUCKET and IMAGE_CACHE_TABLE/],
    [['--backend', 'aws'], { IMAGE_CACHE_BUCKET: 'b-1-2' }, /needs IMAGE_CACHE_TABLE/],
    [['--backend', 'cloud'], aws, /--backend: "cloud" must be embedded or aws/],
    [[], { ...aws, IMAGE_CACHE_BACKEND: 's3' }, /IMAGE_CACHE_BACKEND: "s3"/],
    [['--create-resources'], aws, /only applies to --backend aws/],
    [['--backend', 'aws'], { ...aws, IMAGE_CACHE_BUCKET: 'Bad_Bucket' }, /not a valid S3 bucket/],
    [['--backend', 'aws'], { ...aws, IMAGE_CACHE_TABLE: 'a b' }, /not a valid DynamoDB table/],
  ])('refuses %j with %j', (argv, env, message) => {
    expect(() => parseServeArgs(argv, env)).toThrow(ConfigError);
    expect(() => parseServeArgs(argv, env)).toThrow(message);
  });

  it('builds its client from the standard settings and creates the table only when asked', async () => {
    // Credentials come from the SDK's provider chain, which reads process.env.
    vi.stubEnv('AWS_ACCESS_KEY_ID', 'local');
    vi.stubEnv('AWS_SECRET_ACCESS_KEY', 'local');
    const client = DynamoCatalog.clientFor(
      parseAwsSdkSettings({ AWS_ENDPOINT_URL_DYNAMODB: server.endpoint }),
    );
    expect(await client.config.region()).toBe('us-east-1');
    const catalog = new DynamoCatalog({ client, tableName: 'created-on-request' });
    try {
      await expect(catalog.listTags()).rejects.toThrow(/non-existent table|not found/i);
      await catalog.createTable();
      await catalog.createTable(); // an existing table is left as it is
      expect(await catalog.listTags()).toEqual([]);
    } finally {
      catalog.close();
      vi.unstubAllEnvs();
    }
  });
});

describe('DynamoCatalog job items', () => {
  it('puts the TTL attribute on a job and its key item, and drops the key item when it ends', async () => {
    const { catalog, table } = await freshCatalog();
    const client = server.client();
    const raw = async (pk: string, sk: string) =>
      (
        await client.send(
          new GetItemCommand({
            TableName: table,
            Key: { pk: { S: pk }, sk: { S: sk } },
            ConsistentRead: true,
          }),
        )
      ).Item;
    try {
      const key = 'pull|docker.io/library/alpine:3|default';
      const { job } = await catalog.createOrJoinJob({
        id: 'ttl-job',
        kind: 'pull',
        key,
        request: { kind: 'pull', reference: 'docker.io/library/alpine:3' },
        now: 1_000_000,
        expiresAt: 8_000_000,
      });
      expect((await raw('JOB#ttl-job', 'JOB'))?.ttl).toEqual({ N: '8000' });
      expect((await raw(`JOBKEY#${key}`, 'JOBKEY'))?.ttl).toEqual({ N: '8000' });

      const lease = { owner: 'w', now: 1_000_001, until: 1_060_001 };
      expect(await catalog.claimJob(job.id, lease)).toBeDefined();
      const progress = { layers: [], lines: [], linesSeen: 0 };
      const end = { progress, now: 2_000_000, expiresAt: 88_400_000 };
      const result = { kind: 'load' as const, messages: ['Loaded image: x:1'] };
      expect(await catalog.finishJob(job.id, 'w', { status: 'succeeded', result, ...end })).toBe(
        true,
      );
      expect((await raw('JOB#ttl-job', 'JOB'))?.ttl).toEqual({ N: '88400' });
      expect(await raw(`JOBKEY#${key}`, 'JOBKEY')).toBeUndefined();
    } finally {
      catalog.close();
    }
  });
});
