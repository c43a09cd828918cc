/**
 * Issue 13: no DynamoDB Scan on a request path. Every image request (`image ls`, inspect and
 * history by name and by ID, tag, save, rmi) goes through the real router on the AWS backend
 * against DynamoDB Local, and the SDK middleware that counts requests per operation must never
 * see a Scan. That includes the collection of the blobs an rmi or prune freed: it asks the
 * blob -> manifest index about those blobs only (lib/adapters/dynamo/blob-users.ts).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { digestHex } from '../lib/digest.ts';
import { zeroTotals } from '../lib/metrics/stats-recorder.ts';
import type { StatsReport } from '../lib/stats/stats-report.ts';
import { type AwsBackend, startAwsBackend } from './support/aws-backend.ts';
import { stopAwsEmulators } from './support/aws-emulators.ts';
import { type SeededImage, seedImage } from './support/seed-images.ts';

let backend: AwsBackend;
let images: SeededImage[];
/** What CacheMetrics would have counted in this process (the recorder reads only totals()). */
const totals = zeroTotals();

beforeAll(async () => {
  backend = await startAwsBackend({ totals: () => totals });
  const deps = backend.composition.context;
  images = [];
  for (const [i, name] of ['alpha', 'beta', 'gamma'].entries()) {
    images.push(
      await seedImage(deps, {
        name,
        layers: [[`${name}-layer`, 2_000]],
        tags: [[`docker.io/library/${name}`, 'latest']],
        digestRef: `docker.io/library/${name}`,
        now: 1_000 + i,
      }),
    );
  }
}, 120_000);

afterAll(async () => {
  await backend?.close();
  await stopAwsEmulators();
});

/** Runs one request and answers the DynamoDB operations it sent. */
async function operationsOf(
  method: string,
  path: string,
  query: Record<string, string> = {},
  status = 200,
) {
  backend.catalog.requests.reset();
  const response = await backend.call(method, path, query);
  expect(response.status, response.body.toString()).toBe(status);
  const operations = backend.catalog.requests.byOperation();
  expect(Object.keys(operations).length).toBeGreaterThan(0);
  return operations;
}

describe('image requests on DynamoDB send no Scan', () => {
  it('image ls, with and without filters', async () => {
    const ls = await backend.call('GET', '/images/json');
    expect(JSON.parse(ls.body.toString())).toHaveLength(3);
    expect(await operationsOf('GET', '/images/json')).not.toHaveProperty('Scan');
    const filters = JSON.stringify({
      reference: { alpha: true },
      before: { 'gamma:latest': true },
    });
    expect(await operationsOf('GET', '/images/json', { filters })).not.toHaveProperty('Scan');
  });

  it("the dashboard's image listing: the entries' Query, the manifests' BatchGetItem, the pins", async () => {
    await backend.call('PUT', `/cache/pins/${images[0]!.id}`);
    const listing = JSON.parse((await backend.call('GET', '/cache/images')).body.toString());
    expect(listing).toHaveLength(3);
    expect(listing.find((i: { Id: string }) => i.Id === images[0]!.id).Pins).toHaveLength(1);
    const operations = await operationsOf('GET', '/cache/images');
    expect(operations).not.toHaveProperty('Scan');
    // Usage by key, in one batch for three images: the cost grows with the images listed.
    expect(operations).toMatchObject({ BatchGetItem: 1 });
    await backend.call('DELETE', `/cache/pins/${images[0]!.id}`);
  });

  it('inspect and history by name, by ID and by ID prefix', async () => {
    const [alpha] = images;
    for (const name of ['alpha', 'alpha:latest', alpha!.id, digestHex(alpha!.id).slice(0, 12)]) {
      const path = `/images/${encodeURIComponent(name)}`;
      expect(await operationsOf('GET', `${path}/json`)).not.toHaveProperty('Scan');
      expect(await operationsOf('GET', `${path}/history`)).not.toHaveProperty('Scan');
    }
    const inspect = await backend.call('GET', `/images/${alpha!.id}/json`);
    expect(JSON.parse(inspect.body.toString()).RepoTags).toEqual(['alpha:latest']);
    await operationsOf('GET', '/images/nothing-here/json', {}, 404);
  });

  it('tag, then save by name and by ID', async () => {
    expect(
      await operationsOf('POST', '/images/beta/tag', { repo: 'beta', tag: 'two' }, 201),
    ).not.toHaveProperty('Scan');
    expect(await operationsOf('GET', '/images/get', { names: 'beta:two' })).not.toHaveProperty(
      'Scan',
    );
    expect(await operationsOf('GET', '/images/get', { names: images[1]!.id })).not.toHaveProperty(
      'Scan',
    );
    const ls = JSON.parse((await backend.call('GET', '/images/json')).body.toString());
    expect(ls.find((i: { Id: string }) => i.Id === images[1]!.id).RepoTags).toEqual([
      'beta:latest',
      'beta:two',
    ]);
  });

  it('rmi by name (untag) and by ID', async () => {
    expect(await operationsOf('DELETE', '/images/beta:two', { noprune: '1' })).not.toHaveProperty(
      'Scan',
    );
    expect(
      await operationsOf('DELETE', `/images/${images[2]!.id}`, { noprune: '1' }),
    ).not.toHaveProperty('Scan');
    const ls = JSON.parse((await backend.call('GET', '/images/json')).body.toString());
    expect(ls.map((i: { Id: string }) => i.Id).sort()).toEqual(
      [images[0]!.id, images[1]!.id].sort(),
    );
  });

  it('rmi and prune collect the blobs they freed, keeping shared ones, without a Scan', async () => {
    const deps = backend.composition.context;
    // delta shares alpha's layer; epsilon is dangling (no tag), for prune.
    const delta = await seedImage(deps, {
      name: 'delta',
      layers: [
        ['alpha-layer', 2_000],
        ['delta-layer', 3_000],
      ],
      tags: [['docker.io/library/delta', 'latest']],
      now: 2_000,
    });
    const epsilon = await seedImage(deps, {
      name: 'epsilon',
      layers: [['epsilon-layer', 1_000]],
      now: 2_001,
    });
    const [shared, own] = delta.layers;
    const rmi = await operationsOf('DELETE', `/images/${delta.id}`);
    expect(rmi).not.toHaveProperty('Scan');
    expect(await backend.catalog.getBlob(own!.digest)).toBeUndefined();
    expect(await backend.catalog.getBlob(delta.config.digest)).toBeUndefined();
    expect(await backend.catalog.getBlob(shared!.digest)).toMatchObject({ state: 'live' });

    const prune = await operationsOf('POST', '/images/prune');
    expect(prune).not.toHaveProperty('Scan');
    expect(await backend.catalog.getBlob(epsilon.layers[0]!.digest)).toBeUndefined();
    expect(await backend.catalog.getBlob(images[0]!.layers[0]!.digest)).toMatchObject({
      state: 'live',
    });
  });

  it('the registry tag list of a cached repository', async () => {
    expect(await operationsOf('GET', '/v2/library/alpha/tags/list')).not.toHaveProperty('Scan');
  });
});

describe('/cache/stats on DynamoDB sends no Scan', () => {
  it('answers from one Query of the STATS partition after maintenance recorded the storage', async () => {
    const before = JSON.parse((await backend.call('GET', '/cache/stats')).body.toString());
    expect(before.storage.measuredAt).toBeNull();

    // The scheduled pass may Scan (the collector reads every blob record); it leaves the figures.
    await backend.composition.operations.maintain();
    const live = (await backend.catalog.listBlobs()).filter((blob) => blob.state === 'live');
    const entries = await backend.catalog.listImageEntries();

    totals.manifestHits += 3;
    totals.bytesServed += 12_345;
    backend.catalog.requests.reset();
    expect(await backend.composition.operations.flushStats()).toBe(1);
    expect(backend.catalog.requests.byOperation()).toEqual({ UpdateItem: 1 });
    backend.catalog.requests.reset();
    expect(await backend.composition.operations.flushStats()).toBe(0);
    expect(backend.catalog.requests.byOperation()).toEqual({});

    const operations = await operationsOf('GET', '/cache/stats', { since: '24h' });
    expect(operations).toEqual({ Query: 1 });
    const report = JSON.parse(
      (await backend.call('GET', '/cache/stats', { since: '24h' })).body.toString(),
    ) as StatsReport;
    expect(report.storage).toMatchObject({
      storedBytes: live.reduce((sum, blob) => sum + blob.size, 0),
      storedBlobs: live.length,
      images: entries.length,
      budgetBytes: null,
    });
    expect(Date.parse(report.storage.measuredAt ?? '')).toBeGreaterThan(Date.now() - 60_000);
    expect(report.totals.manifestHits).toBe(3);
    expect(report.totals.bytesServed).toBe(12_345);
    expect(report.pullsSaved).toBe(3);
  });
});
