import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseServeArgs } from '../lib/config.ts';
import { digestHex } from '../lib/digest.ts';
import { collectBlobs } from '../lib/gc.ts';
import { applyRetention, parseByteSize, runMaintenance } from '../lib/retention.ts';
import { type EngineHarness, startEngine } from './support/engine-harness.ts';
import { type SeededImage, seedImage, storeBlob } from './support/seed-images.ts';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

/**
 * Three images sharing a 4000-byte base; each has its own 1000-byte layer and a small config.
 * Last used: a (oldest), c, b (newest), set with the manual clock as pulls would.
 */
describe('retention', () => {
  let engine: EngineHarness;
  let a: SeededImage;
  let b: SeededImage;
  let c: SeededImage;

  const collect = (digests: Parameters<typeof collectBlobs>[1]) =>
    collectBlobs(engine.context, digests, { trigger: 'prune' });
  const retention = (settings: { maxBytes?: number; maxAgeMs?: number }) =>
    applyRetention(engine.context, settings, collect);
  const size = (...images: SeededImage[]) =>
    [
      ...new Map(images.flatMap((i) => i.blobs.map((b) => [b.digest, b.size] as const))).values(),
    ].reduce((sum, bytes) => sum + bytes, 0);
  const ownHexes = (image: SeededImage) => image.blobs.slice(0, 2).map((b) => digestHex(b.digest));

  beforeEach(async () => {
    engine = await startEngine();
    const deps = engine.context;
    const seed = (name: string) =>
      seedImage(deps, {
        name,
        layers: [
          [name, 1000],
          ['base', 4000],
        ],
        tags: [[`docker.io/library/${name}`, '1']],
        now: engine.clock.now(),
      });
    a = await seed('a');
    engine.clock.advance(DAY);
    b = await seed('b');
    c = await seed('c');
    engine.clock.advance(DAY);
    // A pull of c now makes it more recent than a, b more recent still.
    await deps.catalog.touchManifest(c.manifest, engine.clock.now());
    engine.clock.advance(HOUR);
    await deps.catalog.touchManifest(b.manifest, engine.clock.now());
    engine.clock.advance(HOUR);
  });

  afterEach(async () => {
    await engine.close();
  });

  it('evicts images not used within the maximum age, and only those', async () => {
    const before = await engine.blobFiles();
    const report = await retention({ maxAgeMs: DAY });
    expect(report.Evicted.map((e) => [e.Id, e.Reason])).toEqual([[a.id, 'max-age']]);
    const after = await engine.blobFiles();
    const gone = [...before.keys()].filter((h) => !after.has(h)).sort();
    // The base layer stays: b and c need it.
    expect(gone).toEqual(ownHexes(a).sort());
    expect(report.SpaceReclaimed).toBe(gone.reduce((s, h) => s + before.get(h)!, 0));
    expect(report.ImagesDeleted).toEqual([{ Untagged: 'a:1' }, { Deleted: a.id }]);
    expect(report.MaxAge).toBe('1d');
  });

  it('evicts least recently used images until the needed blobs fit the budget', async () => {
    const total = size(a, b, c);
    expect((await retention({ maxBytes: total })).Evicted).toEqual([]);
    // Removing a alone frees a's own blobs; the budget needs c to go too, but not b.
    const budget = total - size(a) + 4000 - 1;
    const report = await retention({ maxBytes: budget });
    expect(report.Evicted.map((e) => [e.Id, e.Reason])).toEqual([
      [a.id, 'max-bytes'],
      [c.id, 'max-bytes'],
    ]);
    expect(report.StoredBytes.Before).toBe(total);
    expect(report.StoredBytes.After).toBe(size(b));
    expect(report.StoredBytes.After).toBeLessThanOrEqual(budget);
    const images = (await engine.call('GET', '/images/json')).body;
    expect(images.map((i: { Id: string }) => i.Id)).toEqual([b.id]);
  });

  it('never evicts a pinned image, even the least recently used one', async () => {
    await engine.call('PUT', '/cache/pins/a:1');
    const report = await retention({ maxBytes: 1, maxAgeMs: HOUR });
    expect(report.Evicted.map((e) => e.Id)).toEqual([c.id, b.id]);
    const images = (await engine.call('GET', '/images/json')).body;
    expect(images.map((i: { Id: string }) => i.Id)).toEqual([a.id]);
  });

  it('POST /cache/retention applies the configured policy or the one in the query', async () => {
    const response = await engine.call('POST', '/cache/retention', { maxAge: '30h' });
    expect(response.status).toBe(200);
    expect(response.body.Evicted.map((e: { Id: string }) => e.Id)).toEqual([a.id]);
    const none = await engine.call('POST', '/cache/retention');
    expect(none.body.Evicted).toEqual([]);
    expect(none.body.MaxBytes).toBeNull();
  });

  it('the scheduled run applies retention, then collects with the grace window', async () => {
    const now = engine.clock.now();
    const fresh = await storeBlob(engine.context, Buffer.from('unreferenced, fresh'), now);
    const stale = await storeBlob(
      engine.context,
      Buffer.from('unreferenced, stale'),
      now - 2 * HOUR,
    );
    const result = await runMaintenance(
      engine.context,
      { gcGraceMs: HOUR, maxAgeMs: DAY },
      collect,
    );
    expect(result.retention?.Evicted.map((e) => e.Id)).toEqual([a.id]);
    expect(result.gc.trigger).toBe('schedule');
    const files = await engine.blobFiles();
    expect(files.has(digestHex(fresh.digest))).toBe(true);
    expect(files.has(digestHex(stale.digest))).toBe(false);
    // What it leaves in the history: the storage after the run, measured now.
    const [hour] = await engine.context.stats.listHours(0);
    expect(hour?.gauges).toEqual({
      storedBytes: [...files.values()].reduce((sum, bytes) => sum + bytes, 0),
      storedBlobs: files.size,
      images: 2,
      storageMeasuredAt: now,
    });
  });
});

describe('parseByteSize', () => {
  it.each([
    ['0', 0],
    ['512', 512],
    ['50GB', 50e9],
    ['50gb', 50e9],
    ['50G', 50e9],
    ['1.5MB', 1_500_000],
    ['2KiB', 2048],
    ['1TiB', 2 ** 40],
  ])('%s', (text, expected) => {
    expect(parseByteSize(text)).toBe(expected);
  });

  it.each(['', 'lots', '-1GB', '5 parsecs'])('refuses %j', (text) => {
    expect(() => parseByteSize(text)).toThrow(/invalid size/);
  });
});

describe('serve settings for GC and retention', () => {
  const parse = (argv: string[], env: Record<string, string> = {}) =>
    parseServeArgs(['--data', '/tmp/x', ...argv], env);

  it('defaults to a 6h schedule, a 1h grace and no retention limits', () => {
    const config = parse([]);
    expect([config.gcIntervalMs, config.gcGraceMs]).toEqual([6 * HOUR, HOUR]);
    expect([config.maxBytes, config.maxAgeMs]).toEqual([undefined, undefined]);
  });

  it('reads flags over environment variables; 0 turns a setting off', () => {
    const config = parse(['--gc-interval', '0', '--max-bytes', '50GB'], {
      IMAGE_CACHE_GC_INTERVAL: '1h',
      IMAGE_CACHE_GC_GRACE: '10m',
      IMAGE_CACHE_MAX_BYTES: '1GB',
      IMAGE_CACHE_MAX_AGE: '30d',
    });
    expect(config).toMatchObject({
      gcIntervalMs: 0,
      gcGraceMs: 600_000,
      maxBytes: 50e9,
      maxAgeMs: 30 * DAY,
    });
    const off = parse(['--max-age', '0', '--max-bytes', '0']);
    expect([off.maxAgeMs, off.maxBytes]).toEqual([undefined, undefined]);
  });

  it('names the setting in errors', () => {
    expect(() => parse(['--max-bytes', 'lots'])).toThrow(/^--max-bytes: invalid size "lots"/);
    expect(() => parse([], { IMAGE_CACHE_GC_GRACE: 'soon' })).toThrow(/^IMAGE_CACHE_GC_GRACE: /);
  });
});
