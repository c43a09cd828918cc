import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { digestHex } from '../lib/digest.ts';
import { parseTimestamp } from '../lib/prune.ts';
import { type EngineHarness, startEngine } from './support/engine-harness.ts';
import { type SeededImage, seedImage } from './support/seed-images.ts';

const HOUR = 3_600_000;

describe('POST /images/prune', () => {
  let engine: EngineHarness;
  let old: SeededImage;
  let recent: SeededImage;
  let dangling: SeededImage;
  let bare: SeededImage;

  beforeEach(async () => {
    engine = await startEngine();
    const deps = engine.context;
    const now = engine.clock.now();
    // `old` and `dangling` share the base layer; the others are on their own.
    old = await seedImage(deps, {
      name: 'old',
      layers: [
        ['base', 3000],
        ['old', 1000],
      ],
      tags: [['docker.io/library/old', '1']],
      labels: { team: 'a', tier: 'web' },
      created: '2024-01-01T00:00:00Z',
      now,
    });
    recent = await seedImage(deps, {
      name: 'recent',
      layers: [['recent', 2000]],
      tags: [['docker.io/library/recent', '1']],
      labels: { team: 'b' },
      created: '2024-06-20T00:00:00Z',
      now,
    });
    dangling = await seedImage(deps, {
      name: 'dangling',
      layers: [
        ['base', 3000],
        ['dangling', 1500],
      ],
      digestRef: 'docker.io/library/dangling',
      created: '2024-02-01T00:00:00Z',
      now,
    });
    bare = await seedImage(deps, {
      name: 'bare',
      layers: [['bare', 700]],
      created: '2024-03-01T00:00:00Z',
      now,
    });
  });

  afterEach(async () => {
    await engine.close();
  });

  const prune = (filters?: Record<string, Record<string, boolean>>) =>
    engine.call('POST', '/images/prune', filters ? { filters: JSON.stringify(filters) } : {});

  const hexes = (...images: SeededImage[]) =>
    [...new Set(images.flatMap((i) => i.blobs.map((b) => digestHex(b.digest))))].sort();

  async function diskChange(action: () => Promise<unknown>) {
    const before = await engine.blobFiles();
    await action();
    const after = await engine.blobFiles();
    const gone = [...before.keys()].filter((h) => !after.has(h)).sort();
    return { gone, bytes: gone.reduce((sum, h) => sum + before.get(h)!, 0) };
  }

  it('removes dangling images only by default, and reports exactly the bytes it deleted', async () => {
    let response!: Awaited<ReturnType<typeof prune>>;
    const change = await diskChange(async () => {
      response = await prune();
    });
    expect(response.status).toBe(200);
    const ids = (response.body.ImagesDeleted as Array<{ Deleted?: string }>)
      .map((d) => d.Deleted)
      .filter(Boolean);
    expect(ids.sort()).toEqual([bare.id, dangling.id].sort());
    expect(response.body.ImagesDeleted).toContainEqual({
      Untagged: `dangling@${dangling.manifest}`,
    });
    // The base layer is shared with `old`, which stays.
    const base = digestHex(old.layers[0]!.digest);
    expect(change.gone).toEqual(hexes(dangling, bare).filter((h) => h !== base));
    expect(response.body.SpaceReclaimed).toBe(change.bytes);
    const again = await prune();
    expect(again.body).toEqual({ ImagesDeleted: null, SpaceReclaimed: 0 });
  });

  it('dangling=false removes every image that is not pinned', async () => {
    expect((await engine.call('PUT', '/cache/pins/recent:1')).status).toBe(201);
    let response!: Awaited<ReturnType<typeof prune>>;
    const change = await diskChange(async () => {
      response = await prune({ dangling: { false: true } });
    });
    expect(change.gone).toEqual(hexes(old, dangling, bare));
    expect(response.body.SpaceReclaimed).toBe(change.bytes);
    expect(response.body.ImagesDeleted).toContainEqual({ Untagged: 'old:1' });
    const images = (await engine.call('GET', '/images/json')).body;
    expect(images.map((i: { Id: string }) => i.Id)).toEqual([recent.id]);
  });

  it('until keeps images created after the given time (timestamp or duration)', async () => {
    const response = await prune({ dangling: { false: true }, until: { '2024-02-15': true } });
    const ids = response.body.ImagesDeleted.map((d: { Deleted?: string }) => d.Deleted);
    expect(ids.filter(Boolean).sort()).toEqual([old.id, dangling.id].sort());
    // The clock is at 2024-07-01: 240h back is 2024-06-21, after `recent` was created.
    const byDuration = await prune({ dangling: { false: true }, until: { '240h': true } });
    const rest = byDuration.body.ImagesDeleted.map((d: { Deleted?: string }) => d.Deleted);
    expect(rest.filter(Boolean).sort()).toEqual([bare.id, recent.id].sort());
  });

  it('label and label! select by the config labels', async () => {
    const web = await prune({ dangling: { false: true }, label: { 'tier=web': true } });
    expect(web.body.ImagesDeleted.at(-1)).toEqual({ Deleted: old.id });
    const notB = await prune({ dangling: { false: true }, 'label!': { 'team=b': true } });
    const ids = notB.body.ImagesDeleted.map((d: { Deleted?: string }) => d.Deleted);
    expect(ids.filter(Boolean).sort()).toEqual([dangling.id, bare.id].sort());
  });

  it('refuses unknown filters and bad times with 400 and removes nothing', async () => {
    const before = await engine.blobFiles();
    expect(await prune({ reference: { x: true } })).toEqual({
      status: 400,
      body: { message: "invalid filter 'reference'" },
    });
    const bad = await prune({ until: { yesterday: true } });
    expect(bad.status).toBe(400);
    expect(bad.body.message).toBe('failed to parse value as time or duration: "yesterday"');
    const two = await prune({ until: { '1h': true, '2h': true } });
    expect(two.body.message).toBe('more than one until filter specified');
    expect(await engine.blobFiles()).toEqual(before);
  });

  it('records the collector run it made as a prune report', async () => {
    await prune();
    const reports = (await engine.call('GET', '/cache/gc')).body;
    expect(reports[0]).toMatchObject({ trigger: 'prune', graceMs: 0, dryRun: false });
  });
});

describe('parseTimestamp (Docker until values)', () => {
  const now = Date.UTC(2024, 6, 1, 12);
  it.each([
    ['24h', now - 24 * HOUR],
    ['1h30m', now - 1.5 * HOUR],
    ['2024-01-02', Date.UTC(2024, 0, 2)],
    ['2024-01-02T03:04:05Z', Date.UTC(2024, 0, 2, 3, 4, 5)],
    ['2024-01-02T03:04:05+01:00', Date.UTC(2024, 0, 2, 2, 4, 5)],
    ['1700000000', 1_700_000_000_000],
    ['1700000000.5', 1_700_000_000_500],
  ])('%s', (text, expected) => {
    expect(parseTimestamp(text, now)).toBe(expected);
  });

  it.each(['', 'soon', '12h-ago', '2024-13-45'])('refuses %j', (text) => {
    expect(() => parseTimestamp(text, now)).toThrow(/failed to parse value as time or duration/);
  });
});
