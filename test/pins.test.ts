import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { digestHex } from '../lib/digest.ts';
import { parseExpiry } from '../lib/pins.ts';
import { type EngineHarness, startEngine } from './support/engine-harness.ts';
import { type SeededImage, seedImage } from './support/seed-images.ts';

const HOUR = 3_600_000;

describe('pins (/cache/pins)', () => {
  let engine: EngineHarness;
  let app: SeededImage;
  let other: SeededImage;

  beforeEach(async () => {
    engine = await startEngine();
    const now = engine.clock.now();
    app = await seedImage(engine.context, {
      name: 'app',
      layers: [['app', 1200]],
      tags: [['docker.io/team/app', '1']],
      digestRef: 'docker.io/team/app',
      now,
    });
    other = await seedImage(engine.context, { name: 'other', layers: [['other', 800]], now });
  });

  afterEach(async () => {
    await engine.close();
  });

  it('pins by reference (normalised) and by ID, and lists what each pin holds', async () => {
    const byRef = await engine.call('PUT', '/cache/pins/team/app:1', {
      note: 'ci release',
      expires: '24h',
    });
    expect(byRef.status).toBe(201);
    expect(byRef.body).toEqual({
      Name: 'docker.io/team/app:1',
      Id: app.id,
      Manifest: app.manifest,
      Note: 'ci release',
      Created: new Date(engine.clock.now()).toISOString(),
      Expires: new Date(engine.clock.now() + 24 * HOUR).toISOString(),
    });
    const byId = await engine.call('PUT', `/cache/pins/${digestHex(other.id).slice(0, 12)}`);
    expect(byId.body).toMatchObject({ Name: other.id, Manifest: other.manifest, Expires: null });
    // Pinning the same name again replaces it (200, not 201).
    const again = await engine.call('PUT', '/cache/pins/docker.io/team/app:1', { note: 'v2' });
    expect(again.status).toBe(200);
    const list = (await engine.call('GET', '/cache/pins')).body;
    expect(list.map((p: { Name: string; Note: string }) => [p.Name, p.Note])).toEqual([
      ['docker.io/team/app:1', 'v2'],
      [other.id, ''],
    ]);
  });

  it('refuses unknown images and bad expiry times, pinning nothing', async () => {
    expect(await engine.call('PUT', '/cache/pins/nope:1')).toEqual({
      status: 404,
      body: { message: 'No such image: nope:1' },
    });
    const bad = await engine.call('PUT', '/cache/pins/team/app:1', { expires: 'tomorrow' });
    expect(bad.status).toBe(400);
    const past = await engine.call('PUT', '/cache/pins/team/app:1', {
      expires: '2020-01-01T00:00:00Z',
    });
    expect(past.status).toBe(400);
    expect((await engine.call('GET', '/cache/pins')).body).toEqual([]);
  });

  it('unpins by the name as typed, the stored name or an ID prefix', async () => {
    await engine.call('PUT', '/cache/pins/team/app:1');
    await engine.call('PUT', `/cache/pins/${other.id}`);
    expect((await engine.call('DELETE', '/cache/pins/team/app:1')).status).toBe(204);
    expect(
      (await engine.call('DELETE', `/cache/pins/${digestHex(other.id).slice(0, 12)}`)).status,
    ).toBe(204);
    expect(await engine.call('DELETE', '/cache/pins/team/app:1')).toEqual({
      status: 404,
      body: { message: 'No such pin: team/app:1' },
    });
  });

  it('a pinned image resists rmi and prune until forced; untagging one of several names is fine', async () => {
    await engine.call('PUT', '/cache/pins/team/app:1', { note: 'ci' });
    const short = digestHex(app.id).slice(0, 12);
    expect(await engine.call('DELETE', '/images/team/app:1')).toEqual({
      status: 409,
      body: {
        message: `conflict: unable to remove repository reference "team/app:1" (must force) - image ${short} is pinned by team/app:1 (ci)`,
      },
    });
    expect((await engine.call('DELETE', `/images/${short}`)).body.message).toBe(
      `conflict: unable to delete ${short} (must be forced) - image is pinned by team/app:1 (ci)`,
    );
    const prune = await engine.call('POST', '/images/prune', {
      filters: JSON.stringify({ dangling: { false: true } }),
    });
    expect(prune.body.ImagesDeleted).toEqual([{ Deleted: other.id }]);

    await engine.call('POST', '/images/team/app:1/tag', { repo: 'mirror/app', tag: '1' });
    expect((await engine.call('DELETE', '/images/mirror/app:1')).body).toEqual([
      { Untagged: 'mirror/app:1' },
    ]);

    const forced = await engine.call('DELETE', '/images/team/app:1', { force: '1' });
    expect(forced.body).toEqual([
      { Untagged: 'team/app:1' },
      { Untagged: `team/app@${app.manifest}` },
      { Deleted: app.id },
    ]);
    expect((await engine.call('GET', '/cache/pins')).body).toEqual([]);
    expect(await engine.blobFiles()).toEqual(new Map());
  });

  it('an expired pin protects nothing and is cleaned up', async () => {
    await engine.call('PUT', '/cache/pins/team/app:1', { expires: '1h' });
    engine.clock.advance(HOUR);
    expect((await engine.call('GET', '/cache/pins')).body).toEqual([]);
    expect(await engine.context.catalog.listPins()).toEqual([]);

    await engine.call('PUT', `/cache/pins/${app.id}`, { expires: '2h' });
    engine.clock.advance(3 * HOUR);
    // Removal reads the pins first, so the expired one does not keep the manifest record.
    const removed = await engine.call('DELETE', '/images/team/app:1');
    expect(removed.body.at(-1)).toEqual({ Deleted: app.id });
    expect(await engine.context.catalog.listManifests()).toHaveLength(1);
  });
});

describe('parseExpiry', () => {
  const now = Date.UTC(2024, 6, 1);
  it.each([
    ['24h', now + 24 * HOUR],
    ['7d', now + 7 * 24 * HOUR],
    ['2024-07-02T00:00:00Z', Date.UTC(2024, 6, 2)],
    ['2024-07-02T02:00:00+02:00', Date.UTC(2024, 6, 2)],
  ])('%s', (text, expected) => {
    expect(parseExpiry(text, now)).toBe(expected);
  });

  it.each(['0s', '2024-06-30T00:00:00Z', '2024-07-02T00:00:00', 'soon'])('refuses %j', (text) => {
    expect(() => parseExpiry(text, now)).toThrow(/invalid/);
  });
});
