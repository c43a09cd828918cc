/**
 * A watch pass that dies halfway loses no check and repeats none: a claimed check whose process
 * was killed before it recorded anything is due again when its lease ends (and not before),
 * and a pass near its deadline leaves its checks for the next one. The embedded composition
 * runs with a clock moved by hand, against an in-process registry that counts its requests.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type Composition, composeEmbedded } from '../lib/composition.ts';
import { parseServeArgs } from '../lib/config.ts';
import { FakeRegistry, pushImage } from './support/fake-registry.ts';

const NAME = 'docker.io/library/app:1';
const MINUTE = 60_000;

describe('a watch pass that dies halfway', () => {
  let registry: FakeRegistry;
  let dir: string;
  let composition: Composition;
  let now: number;

  beforeEach(async () => {
    registry = await FakeRegistry.start();
    pushImage(registry, 'library/app', '1', { layerSizes: [1000] });
    dir = await mkdtemp(join(tmpdir(), 'watch-recovery-'));
    now = Date.now();
    const config = parseServeArgs(['--data', dir, '--watch-tick', '0', '--gc-interval', '0'], {
      IMAGE_CACHE_REGISTRIES: `docker.io=${registry.url.origin}`,
      IMAGE_CACHE_WATCH_MIN_EVERY: '1s',
    });
    composition = composeEmbedded(config, { clock: { now: () => now } });
    const { watches } = composition.context;
    const settings = {
      name: NAME,
      registry: 'docker.io',
      everyMs: MINUTE,
      platforms: [],
      pin: false,
    };
    await watches.putWatch(settings, now, now);
  });

  afterEach(async () => {
    await composition.close();
    await registry.close();
    await rm(dir, { recursive: true, force: true });
  });

  const heads = () => registry.requestsTo('/v2/library/app/manifests/1', 'HEAD').length;

  it('checks a claim whose checker was killed once its lease ends, and not before', async () => {
    const { watches } = composition.context;
    // What a pass killed between its claim and its record leaves behind.
    expect(await watches.claimWatchCheck(NAME, now, now + 5 * MINUTE)).toBe(true);

    now += 4 * MINUTE;
    expect(await composition.operations.checkWatches()).toMatchObject({ due: 0, checked: 0 });
    expect(heads()).toBe(0);

    now += MINUTE;
    const report = await composition.operations.checkWatches();
    expect(report).toMatchObject({ due: 1, checked: 1, changed: 1 });
    expect(heads()).toBe(1);
    const watch = await watches.getWatch(NAME);
    expect(watch?.lastCheckAt).toBe(now);
    expect(watch?.lastJobs).toHaveLength(1);
  });

  it('starts no check with less than ten seconds left, and leaves it due for the next pass', async () => {
    const report = await composition.operations.checkWatches(() => 9_000);
    expect(report).toMatchObject({ due: 1, checked: 0, skipped: 1 });
    expect(heads()).toBe(0);
    expect((await composition.context.watches.getWatch(NAME))?.nextCheckAt).toBe(now);
    expect(await composition.operations.checkWatches(() => 60_000)).toMatchObject({ checked: 1 });
    expect(heads()).toBe(1);
  });

  it('checks a due watch once when two passes run at the same time', async () => {
    const reports = await Promise.all([
      composition.operations.checkWatches(),
      composition.operations.checkWatches(),
    ]);
    expect(reports.map((r) => r.checked).sort()).toEqual([0, 1]);
    expect(heads()).toBe(1);
  });
});
