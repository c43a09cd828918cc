import { describe, expect, it } from 'vitest';
import { sha256 } from '../../lib/digest.ts';
import { HOUR_MS, hourOf } from '../../lib/ports/stats-log.ts';
import type { WatchSettings, WatchStore } from '../../lib/ports/watch-store.ts';
import { type Conformance, freshHarness } from './harness.ts';

/** The current hour: DynamoDB keeps budget hours under a TTL judged by the real clock. */
const H0 = hourOf(Date.now());
const MINUTE = 60_000;

function settings(name: string, overrides: Partial<WatchSettings> = {}): WatchSettings {
  return {
    name,
    registry: name.split('/')[0] ?? 'docker.io',
    everyMs: 10 * MINUTE,
    platforms: [],
    pin: false,
    ...overrides,
  };
}

const NGINX = 'docker.io/library/nginx:1.27';

/** The behaviour every WatchStore adapter must show; `make` gives a fresh, empty store per test. */
export const watchStoreConformance: Conformance<WatchStore> = (name, make) => {
  describe(`WatchStore conformance: ${name}`, () => {
    const { store: watches, another } = freshHarness(make);

    /** A watch with one finished check behind it, the history an update must keep. */
    async function checkedWatch(watch: WatchSettings) {
      await watches.putWatch(watch, 1_000, 2_000);
      await watches.recordWatchCheck(watch.name, {
        checkedAt: 2_100,
        nextCheckAt: 3_000,
        digest: sha256('index-1'),
        change: { at: 2_050, jobs: ['job-1'] },
        error: 'was slow',
      });
    }

    it('creates a watch with its schedule and no history', async () => {
      expect(await watches.getWatch(NGINX)).toBeUndefined();
      const watch = settings(NGINX, { platforms: ['linux/amd64', 'linux/arm64/v8'], pin: true });
      const answer = await watches.putWatch(watch, 1_000, 61_000);
      const record = { ...watch, createdAt: 1_000, nextCheckAt: 61_000 };
      expect(answer).toEqual({ record, created: true });
      expect(await watches.getWatch(NGINX)).toEqual(record);
    });

    it('updates settings, keeping the history and the due time while the interval stays', async () => {
      await checkedWatch(settings(NGINX));
      const changed = settings(NGINX, { platforms: ['linux/arm64/v8'], pin: true });
      const answer = await watches.putWatch(changed, 5_000, 99_000);
      const record = {
        ...changed,
        createdAt: 1_000,
        nextCheckAt: 3_000,
        lastCheckAt: 2_100,
        lastDigest: sha256('index-1'),
        lastChangeAt: 2_050,
        lastError: 'was slow',
        lastJobs: ['job-1'],
      };
      expect(answer).toEqual({ record, created: false });
      expect(await watches.getWatch(NGINX)).toEqual(record);
    });

    it('moves the due time when the interval changes', async () => {
      await checkedWatch(settings(NGINX));
      const { record, created } = await watches.putWatch(
        settings(NGINX, { everyMs: MINUTE }),
        5_000,
        65_000,
      );
      expect(created).toBe(false);
      expect(record).toMatchObject({ everyMs: MINUTE, nextCheckAt: 65_000, createdAt: 1_000 });
      expect(record.lastDigest).toBe(sha256('index-1'));
      expect(await watches.getWatch(NGINX)).toEqual(record);
    });

    it('creates a watch once when two instances put it at the same time', async () => {
      const other = await another();
      const answers = await Promise.all(
        Array.from({ length: 8 }, (_, i) =>
          (i % 2 === 0 ? watches : other).putWatch(settings(NGINX), 1_000 + i, 2_000 + i),
        ),
      );
      expect(answers.filter((a) => a.created)).toHaveLength(1);
      const winner = answers.findIndex((a) => a.created);
      const stored = await other.getWatch(NGINX);
      expect(stored).toMatchObject({ createdAt: 1_000 + winner, nextCheckAt: 2_000 + winner });
      for (const answer of answers) expect(answer.record).toEqual(stored);
    });

    it('deletes a watch, answering the removed record once', async () => {
      await checkedWatch(settings(NGINX));
      const before = await watches.getWatch(NGINX);
      expect(before).toBeDefined();
      expect(await watches.deleteWatch(NGINX)).toEqual(before);
      expect(await watches.deleteWatch(NGINX)).toBeUndefined();
      expect(await watches.getWatch(NGINX)).toBeUndefined();
      expect(await watches.listWatches()).toEqual([]);
    });

    it('lists watches by name', async () => {
      expect(await watches.listWatches()).toEqual([]);
      const names = ['quay.io/a/b:1', 'docker.io/library/redis:7', NGINX, 'ghcr.io/x/y:main'];
      for (const [i, name] of names.entries()) await watches.putWatch(settings(name), i, 100 + i);
      const listed = await watches.listWatches();
      expect(listed.map((w) => w.name)).toEqual([...names].sort());
      expect(listed.find((w) => w.name === 'ghcr.io/x/y:main')).toEqual({
        ...settings('ghcr.io/x/y:main'),
        createdAt: 3,
        nextCheckAt: 103,
      });
    });

    it('lets exactly one of many concurrent claims of a due check win', async () => {
      await watches.putWatch(settings(NGINX), 1_000, 2_000);
      const other = await another();
      const claims = await Promise.all(
        Array.from({ length: 10 }, (_, i) =>
          (i % 2 === 0 ? watches : other).claimWatchCheck(NGINX, 2_000, 10_000 + i),
        ),
      );
      expect(claims.filter(Boolean)).toHaveLength(1);
      const winner = claims.indexOf(true);
      expect((await other.getWatch(NGINX))?.nextCheckAt).toBe(10_000 + winner);
      // The lease is the new due time: claiming it again works, the old one no longer does.
      expect(await watches.claimWatchCheck(NGINX, 2_000, 20_000)).toBe(false);
      expect(await watches.claimWatchCheck(NGINX, 10_000 + winner, 20_000)).toBe(true);
    });

    it('refuses the claim of a deleted or unknown watch and does not create it', async () => {
      await watches.putWatch(settings(NGINX), 1_000, 2_000);
      await watches.deleteWatch(NGINX);
      expect(await watches.claimWatchCheck(NGINX, 2_000, 10_000)).toBe(false);
      expect(await watches.claimWatchCheck('docker.io/library/none:1', 2_000, 10_000)).toBe(false);
      expect(await watches.listWatches()).toEqual([]);
    });

    it('drops the outcome of a check whose watch was deleted meanwhile', async () => {
      await watches.putWatch(settings(NGINX), 1_000, 2_000);
      expect(await watches.claimWatchCheck(NGINX, 2_000, 10_000)).toBe(true);
      await watches.deleteWatch(NGINX);
      await watches.recordWatchCheck(NGINX, {
        checkedAt: 3_000,
        nextCheckAt: 4_000,
        digest: sha256('late'),
        change: { at: 3_000, jobs: ['job-late'] },
      });
      expect(await watches.getWatch(NGINX)).toBeUndefined();
      expect(await watches.listWatches()).toEqual([]);
    });

    it('records outcomes: an absent digest keeps the last, a change replaces, no error clears', async () => {
      await checkedWatch(settings(NGINX));
      // No answer from upstream: the digest and the change stay, the error is the new one.
      await watches.recordWatchCheck(NGINX, {
        checkedAt: 4_000,
        nextCheckAt: 5_000,
        error: 'upstream 503',
      });
      expect(await watches.getWatch(NGINX)).toMatchObject({
        lastCheckAt: 4_000,
        nextCheckAt: 5_000,
        lastDigest: sha256('index-1'),
        lastChangeAt: 2_050,
        lastJobs: ['job-1'],
        lastError: 'upstream 503',
      });
      // Unchanged tag: a new digest answer, no change, and the error goes.
      await watches.recordWatchCheck(NGINX, {
        checkedAt: 6_000,
        nextCheckAt: 7_000,
        digest: sha256('index-1'),
      });
      const quiet = await watches.getWatch(NGINX);
      expect(quiet).toMatchObject({ lastCheckAt: 6_000, lastChangeAt: 2_050, lastJobs: ['job-1'] });
      expect(quiet).not.toHaveProperty('lastError');
      // The tag moved: digest, change time and jobs are all replaced.
      await watches.recordWatchCheck(NGINX, {
        checkedAt: 8_000,
        nextCheckAt: 9_000,
        digest: sha256('index-2'),
        change: { at: 7_900, jobs: ['job-2', 'job-3'] },
      });
      expect(await watches.getWatch(NGINX)).toEqual({
        ...settings(NGINX),
        createdAt: 1_000,
        lastCheckAt: 8_000,
        nextCheckAt: 9_000,
        lastDigest: sha256('index-2'),
        lastChangeAt: 7_900,
        lastJobs: ['job-2', 'job-3'],
      });
    });

    it('keeps the later pause of a registry', async () => {
      expect(await watches.listRegistryPauses()).toEqual([]);
      await watches.pauseRegistry({ registry: 'docker.io', until: 5_000, reason: '429' });
      await watches.pauseRegistry({ registry: 'docker.io', until: 3_000, reason: 'low remaining' });
      await watches.pauseRegistry({ registry: 'ghcr.io', until: 1_000, reason: '429' });
      expect(await watches.listRegistryPauses()).toEqual([
        { registry: 'docker.io', until: 5_000, reason: '429' },
        { registry: 'ghcr.io', until: 1_000, reason: '429' },
      ]);
      await watches.pauseRegistry({ registry: 'docker.io', until: 9_000, reason: 'again' });
      expect((await watches.listRegistryPauses())[0]).toEqual({
        registry: 'docker.io',
        until: 9_000,
        reason: 'again',
      });
    });

    it('never counts more background pulls than the limit, however many instances take', async () => {
      const other = await another();
      const takes = await Promise.all(
        Array.from({ length: 30 }, (_, i) =>
          (i % 2 === 0 ? watches : other).takeBackgroundPull('docker.io', H0, 7),
        ),
      );
      expect(takes.filter(Boolean)).toHaveLength(7);
      expect(await watches.backgroundPulls('docker.io', H0)).toBe(7);
      expect(await other.takeBackgroundPull('docker.io', H0, 7)).toBe(false);
      // A larger limit (a changed setting) lets more through in the same hour.
      expect(await other.takeBackgroundPull('docker.io', H0, 8)).toBe(true);
      expect(await watches.backgroundPulls('docker.io', H0)).toBe(8);
    });

    it('counts each registry and hour on its own', async () => {
      expect(await watches.backgroundPulls('docker.io', H0)).toBe(0);
      expect(await watches.takeBackgroundPull('docker.io', H0, 2)).toBe(true);
      expect(await watches.takeBackgroundPull('docker.io', H0, 2)).toBe(true);
      expect(await watches.takeBackgroundPull('docker.io', H0, 2)).toBe(false);
      expect(await watches.takeBackgroundPull('ghcr.io', H0, 2)).toBe(true);
      expect(await watches.takeBackgroundPull('docker.io', H0 + HOUR_MS, 2)).toBe(true);
      expect(await watches.takeBackgroundPull('docker.io', H0, 0)).toBe(false);
      expect(await watches.takeBackgroundPull('quay.io', H0, 0)).toBe(false);
      expect(await watches.backgroundPulls('docker.io', H0)).toBe(2);
      expect(await watches.backgroundPulls('ghcr.io', H0)).toBe(1);
      expect(await watches.backgroundPulls('docker.io', H0 + HOUR_MS)).toBe(1);
      expect(await watches.backgroundPulls('quay.io', H0)).toBe(0);
    });
  });
};
