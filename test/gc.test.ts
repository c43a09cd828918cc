import { readFile, utimes } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FsBlobStore } from '../lib/adapters/fs-blob-store.ts';
import { SqliteCatalog } from '../lib/adapters/sqlite-catalog.ts';
import { BlobFetcher } from '../lib/blob-fetcher.ts';
import { type Digest, sha256 } from '../lib/digest.ts';
import { BlobNotLiveError } from '../lib/errors.ts';
import {
  CollectorClaims,
  collectBlobs,
  collectGarbage,
  type GcDeps,
  startGcSchedule,
} from '../lib/gc.ts';
import type { BlobStore } from '../lib/ports/blob-store.ts';
import type { Catalog, ManifestRecord } from '../lib/ports/catalog.ts';
import type { Upstream } from '../lib/ports/upstream.ts';
import { type TempDir, tempDir } from './support/tmp.ts';
import { ManualClock } from './support/upstream-harness.ts';

const HOUR = 3_600_000;
const REPO = 'docker.io/library/gc';

/**
 * The collector against the real adapters (SQLite file + blob folder) with a clock moved by
 * hand. Races are staged with wrappers around the ports that run a writer at the exact moment
 * between two steps of the collector.
 */
describe('garbage collection', () => {
  let dir: TempDir;
  let catalog: SqliteCatalog;
  let blobs: FsBlobStore;
  let clock: ManualClock;
  let deps: GcDeps;

  beforeEach(async () => {
    dir = await tempDir('gc');
    catalog = new SqliteCatalog(dir.file('catalog.db'));
    blobs = new FsBlobStore(dir.path);
    // Real wall time, so file mtimes (orphans) and the clock agree.
    clock = new ManualClock(Date.now());
    deps = { catalog, gcReports: catalog, blobs, clock, gcClaims: new CollectorClaims() };
  });

  afterEach(async () => {
    catalog.close();
    await dir.cleanup();
  });

  /** Stores bytes and records the blob, as a pull does. */
  async function storeBlob(content: string): Promise<Digest> {
    const { digest } = await blobs.write(Readable.from([Buffer.from(content)]));
    expect(await catalog.addBlob({ digest, size: content.length }, clock.now())).toBe('live');
    return digest;
  }

  function manifestOf(name: string, digests: Digest[]): ManifestRecord {
    const raw = new TextEncoder().encode(JSON.stringify({ name, digests }));
    return {
      digest: sha256(raw),
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      raw,
      blobs: digests,
      children: [],
      createdAt: clock.now(),
      lastUsedAt: clock.now(),
    };
  }

  async function commit(name: string, digests: Digest[], tag?: string): Promise<ManifestRecord> {
    const manifest = manifestOf(name, digests);
    await catalog.commitImage({
      manifests: [manifest],
      blobs: digests,
      tag: tag
        ? { repository: REPO, tag, manifest: manifest.digest, source: manifest.digest }
        : undefined,
      now: clock.now(),
    });
    return manifest;
  }

  const present = async (digest: Digest) => (await blobs.stat(digest)) !== undefined;

  it('deletes unreferenced blobs past the grace window and keeps the rest', async () => {
    const config = await storeBlob('config');
    const layer = await storeBlob('layer');
    const dangling = await storeBlob('dangling-layer');
    const garbage = [await storeBlob('garbage-1'), await storeBlob('garbage-22')];
    await commit('tagged', [config, layer], 'v1');
    await commit('untagged', [dangling]);
    clock.advance(2 * HOUR);
    const young = await storeBlob('young');

    const report = await collectGarbage(deps, { graceMs: HOUR });

    for (const digest of garbage) {
      expect(await present(digest)).toBe(false);
      expect(await catalog.getBlob(digest)).toBeUndefined();
    }
    for (const digest of [config, layer, dangling, young]) {
      expect(await present(digest)).toBe(true);
      expect(await catalog.getBlob(digest)).toMatchObject({ state: 'live' });
    }
    expect(report).toMatchObject({
      trigger: 'manual',
      dryRun: false,
      graceMs: HOUR,
      startedAt: clock.now(),
      examined: { blobs: 6, bytes: 6 + 5 + 14 + 9 + 10 + 5 },
      kept: { blobs: 4, bytes: 6 + 5 + 14 + 5 },
      deleted: { blobs: 2, bytes: 9 + 10 },
      orphans: { blobs: 0, bytes: 0 },
      errors: [],
    });
    expect(await catalog.listGcReports(10)).toEqual([report]);

    // With grace 0 the young blob goes too; a second run then finds nothing to do.
    const again = await collectGarbage(deps, { graceMs: 0, trigger: 'schedule' });
    expect(again.deleted).toEqual({ blobs: 1, bytes: 5 });
    expect(await present(young)).toBe(false);
    expect((await collectGarbage(deps, { graceMs: 0 })).deleted.blobs).toBe(0);
    expect((await catalog.listGcReports(10)).map((r) => r.id)[1]).toBe(again.id);
  });

  it('changes nothing in a dry run and says what it would delete', async () => {
    const kept = await storeBlob('kept');
    await commit('image', [kept], 'latest');
    const garbage = await storeBlob('garbage');
    const orphan = await blobs.write(Readable.from([Buffer.from('orphan')]));
    await ageFile(orphan.digest, HOUR);
    const stuck = await storeBlob('stuck');
    expect(await catalog.beginBlobDeletion(stuck, 1)).toBe(true);
    const before = await catalog.listBlobs();

    const report = await collectGarbage(deps, { graceMs: 0, dryRun: true });

    expect(report).toMatchObject({
      dryRun: true,
      examined: { blobs: 4 },
      deleted: { blobs: 3, bytes: 7 + 6 + 5 },
      orphans: { blobs: 1, bytes: 6 },
      kept: { blobs: 1, bytes: 4 },
    });
    expect(await catalog.listBlobs()).toEqual(before);
    for (const digest of [kept, garbage, orphan.digest, stuck])
      expect(await present(digest)).toBe(true);
    expect(await catalog.listGcReports(10)).toEqual([]);
  });

  it('keeps a blob a writer touched between the snapshot and the roots', async () => {
    const reused = await storeBlob('reused-layer');
    const garbage = await storeBlob('garbage');
    // The writer's first step (BlobFetcher.ensure touching an existing blob) happens after the
    // collector's snapshot; its commit comes only after the whole collection.
    const interposed = interpose(catalog, {
      listManifests: async () => {
        expect(await catalog.touchBlob(reused, clock.now())).toBe('live');
      },
    });

    const report = await collectGarbage({ ...deps, catalog: interposed }, { graceMs: 0 });

    expect(await present(reused)).toBe(true);
    expect(await catalog.getBlob(reused)).toMatchObject({ state: 'live', generation: 2 });
    expect(await present(garbage)).toBe(false);
    expect(report.deleted.blobs).toBe(1);
    expect(report.kept.blobs).toBe(1);
    // The writer's commit succeeds: its blob is live and present.
    await commit('writer', [reused], 'latest');
  });

  it('makes a writer that commits after the transition fail and fetch again', async () => {
    const layer = await storeBlob('layer');
    let commitError: unknown;
    const interposed = interpose(catalog, {
      afterBeginBlobDeletion: async () => {
        commitError = await commit('late', [layer], 'latest').catch((error: unknown) => error);
      },
    });
    await collectGarbage({ ...deps, catalog: interposed }, { graceMs: 0 });
    expect(commitError).toBeInstanceOf(BlobNotLiveError);
    expect(await catalog.listTags()).toEqual([]);
    expect(await present(layer)).toBe(false);
  });

  it('is not fooled by a blob deleted and recorded again since its snapshot (ABA)', async () => {
    const layer = await storeBlob('reborn-layer');
    await catalog.touchBlob(layer, clock.now());
    const bytes = await readFile(blobs.paths.blob(layer));
    // Between this collector's roots and its transition, another collector (another process:
    // its own view of the store and its own claims) removes the blob, and a pull stores and
    // commits it again.
    const elsewhere = {
      ...deps,
      gcClaims: new CollectorClaims(),
      blobs: wrapBlobStore(blobs, { delete: async () => {} }),
    };
    let replayed = false;
    const interposed = interpose(catalog, {
      beforeBeginBlobDeletion: async () => {
        if (replayed) return;
        replayed = true;
        expect((await collectGarbage(elsewhere, { graceMs: 0 })).deleted.blobs).toBe(1);
        await blobs.write(Readable.from([bytes]));
        expect(await catalog.addBlob({ digest: layer, size: bytes.length }, clock.now())).toBe(
          'live',
        );
        await commit('pulled again', [layer], 'latest');
      },
    });

    await collectGarbage({ ...deps, catalog: interposed }, { graceMs: 0 });

    expect(replayed).toBe(true);
    expect(await catalog.getTag(REPO, 'latest')).toBeDefined();
    expect(await present(layer)).toBe(true);
    expect(await catalog.getBlob(layer)).toMatchObject({ state: 'live' });
  });

  it('resumes a deletion a crashed collector left half done', async () => {
    const stuck = await storeBlob('stuck-blob');
    const live = await storeBlob('in-use');
    await commit('image', [live], 'latest');
    // Crash between the transition and the byte deletion: bytes and a deleting record remain.
    expect(await catalog.beginBlobDeletion(stuck, 1)).toBe(true);
    clock.advance(HOUR);

    // Grace does not matter: the record is the collector's already.
    const report = await collectGarbage(deps, { graceMs: 24 * HOUR });

    expect(await present(stuck)).toBe(false);
    expect(await catalog.getBlob(stuck)).toBeUndefined();
    expect(report.deleted).toEqual({ blobs: 1, bytes: 10 });
    expect(await present(live)).toBe(true);
  });

  it('claims and deletes orphan files only once they are old enough', async () => {
    const recorded = await storeBlob('recorded');
    await ageFile(recorded, HOUR);
    const young = await blobs.write(Readable.from([Buffer.from('young-orphan')]));
    await ageFile(young.digest, 5 * 60_000);
    const old = await blobs.write(Readable.from([Buffer.from('old-orphan')]));
    await ageFile(old.digest, 20 * 60_000);
    const veryOld = await blobs.write(Readable.from([Buffer.from('very-old')]));
    await ageFile(veryOld.digest, 3 * HOUR);
    await commit('image', [recorded], 'latest');

    // The default minimum age (15 min) protects writes in progress; a longer grace wins.
    const first = await collectGarbage(deps, { graceMs: 2 * HOUR });
    expect(first.orphans).toEqual({ blobs: 1, bytes: 8 });
    expect(await present(veryOld.digest)).toBe(false);
    expect(await present(old.digest)).toBe(true);

    const second = await collectGarbage(deps, { graceMs: 0 });
    expect(second.orphans).toEqual({ blobs: 1, bytes: 10 });
    expect(second.deleted).toEqual({ blobs: 1, bytes: 10 });
    expect(await present(old.digest)).toBe(false);
    expect(await present(young.digest)).toBe(true);
    expect(await present(recorded)).toBe(true);
    for (const digest of [old.digest, veryOld.digest]) {
      expect(await catalog.getBlob(digest)).toBeUndefined();
    }

    const third = await collectGarbage(deps, { graceMs: 0, orphanMinAgeMs: 0 });
    expect(third.orphans.blobs).toBe(1);
    expect(await present(young.digest)).toBe(false);
  });

  it('leaves an orphan alone when a writer records it just before the claim', async () => {
    const file = await blobs.write(Readable.from([Buffer.from('racing-writer')]));
    await ageFile(file.digest, HOUR);
    const interposed = interpose(catalog, {
      beforeGetBlob: async (digest) => {
        if (digest === file.digest) await catalog.addBlob({ digest, size: file.size }, clock.now());
      },
    });
    const report = await collectGarbage({ ...deps, catalog: interposed }, { graceMs: 0 });
    expect(report.orphans.blobs).toBe(0);
    expect(await present(file.digest)).toBe(true);
    expect(await catalog.getBlob(file.digest)).toMatchObject({ state: 'live' });
  });

  it('lets a writer waiting on a blob being deleted fetch it again after the deletion', async () => {
    const bytes = Buffer.from('layer bytes the writer needs again');
    const digest = await storeBlob(bytes.toString());
    const gate = deferred();
    const deleting = deferred();
    const gated: BlobStore = wrapBlobStore(blobs, {
      delete: async () => {
        deleting.resolve();
        await gate.promise;
      },
    });
    let fetches = 0;
    const upstream = {
      getBlob: async () => {
        fetches++;
        return Readable.from([bytes]);
      },
    } as unknown as Upstream;
    const fetcher = new BlobFetcher({ catalog, blobs, upstream, clock, deletionWaitMs: 10_000 });

    const gc = collectGarbage({ ...deps, blobs: gated }, { graceMs: 0 });
    await deleting.promise;
    expect(await catalog.getBlob(digest)).toMatchObject({ state: 'deleting' });
    let ensured = false;
    const ensure = fetcher
      .ensure(
        { registry: 'fake.test', repository: 'x' },
        { digest, size: bytes.length },
        {
          isLayer: false,
        },
      )
      .finally(() => {
        ensured = true;
      });
    await new Promise((r) => setTimeout(r, 100));
    expect(ensured).toBe(false);
    expect(fetches).toBe(0);

    gate.resolve();
    expect((await gc).deleted.blobs).toBe(1);
    expect(await ensure).toMatchObject({ existed: false });
    expect(fetches).toBe(1);
    expect(await catalog.getBlob(digest)).toMatchObject({ state: 'live' });
    expect(await readFile(blobs.paths.blob(digest))).toEqual(bytes);
  });

  it('records a failing blob, goes on, and resumes it on the next run', async () => {
    const stubborn = await storeBlob('stubborn');
    const other = await storeBlob('other');
    const failing = wrapBlobStore(blobs, {
      delete: async (digest) => {
        if (digest === stubborn) throw new Error('disk says no');
      },
    });
    const report = await collectGarbage({ ...deps, blobs: failing }, { graceMs: 0 });
    expect(report.errors).toEqual([`${stubborn}: disk says no`]);
    expect(report.deleted.blobs).toBe(1);
    expect(await present(other)).toBe(false);
    // The failed blob stays claimed, so writers keep treating it as absent.
    expect(await catalog.getBlob(stubborn)).toMatchObject({ state: 'deleting' });

    const next = await collectGarbage(deps, { graceMs: 0 });
    expect(next.errors).toEqual([]);
    expect(next.deleted.blobs).toBe(1);
    expect(await present(stubborn)).toBe(false);
    expect(await catalog.getBlob(stubborn)).toBeUndefined();
  });

  it('collects only the given blobs for prune, and reports the bytes removed', async () => {
    const shared = await storeBlob('shared-base');
    const freed = await storeBlob('freed-layer');
    const unrelated = await storeBlob('unrelated');
    await commit('other image', [shared], 'keep');
    clock.advance(1);

    const report = await collectBlobs(deps, [shared, freed, freed, sha256('never-stored')]);

    expect(report).toMatchObject({
      trigger: 'prune',
      graceMs: 0,
      examined: { blobs: 2 },
      kept: { blobs: 1 },
      deleted: { blobs: 1, bytes: 11 },
    });
    expect(await present(freed)).toBe(false);
    expect(await present(shared)).toBe(true);
    expect(await present(unrelated)).toBe(true);
    expect((await catalog.listGcReports(1))[0]?.id).toBe(report.id);
  });

  it('keeps a prune candidate that a writer touched after it was read', async () => {
    const layer = await storeBlob('layer');
    const interposed = interpose(catalog, {
      listManifests: async () => {
        await catalog.touchBlob(layer, clock.now());
      },
    });
    const report = await collectBlobs({ ...deps, catalog: interposed }, [layer]);
    expect(report.deleted.blobs).toBe(0);
    expect(await present(layer)).toBe(true);
  });

  async function ageFile(digest: Digest, ageMs: number): Promise<void> {
    const when = new Date(clock.now() - ageMs);
    await utimes(blobs.paths.blob(digest), when, when);
  }
});

describe('startGcSchedule', () => {
  it('runs on an interval, never two at once, and stop waits for the run', async () => {
    let running = 0;
    let most = 0;
    let runs = 0;
    const errors: unknown[] = [];
    const schedule = startGcSchedule({
      intervalMs: 5,
      run: async () => {
        running++;
        most = Math.max(most, running);
        runs++;
        await new Promise((r) => setTimeout(r, 20));
        running--;
        if (runs === 2) throw new Error('one bad run');
      },
      onError: (error) => errors.push(error),
    });
    while (runs < 4) await new Promise((r) => setTimeout(r, 5));
    await schedule.stop();
    expect(running).toBe(0);
    const stoppedAt = runs;
    await new Promise((r) => setTimeout(r, 50));
    expect(runs).toBe(stoppedAt);
    expect(most).toBe(1);
    expect(errors).toHaveLength(1);
  });

  it('refuses a non-positive interval', () => {
    expect(() => startGcSchedule({ intervalMs: 0, run: async () => {} })).toThrow(RangeError);
  });
});

interface Interposers {
  /** Runs after the collector's read of its roots (listManifests, referencedBlobs) started. */
  listManifests?: () => Promise<void>;
  afterBeginBlobDeletion?: (digest: Digest) => Promise<void>;
  beforeBeginBlobDeletion?: (digest: Digest) => Promise<void>;
  beforeGetBlob?: (digest: Digest) => Promise<void>;
}

/** The catalog with a writer's step slipped in at one point of the collector's sequence. */
function interpose(catalog: Catalog, hooks: Interposers): Catalog {
  return new Proxy(catalog, {
    get(target, property) {
      if (property === 'listManifests' && hooks.listManifests) {
        return async () => {
          await hooks.listManifests?.();
          return target.listManifests();
        };
      }
      // The collection of given blobs reads its roots through the index instead.
      if (property === 'referencedBlobs' && hooks.listManifests) {
        return async (blobs: Iterable<Digest>) => {
          await hooks.listManifests?.();
          return target.referencedBlobs(blobs);
        };
      }
      if (property === 'beginBlobDeletion') {
        return async (digest: Digest, generation: number) => {
          await hooks.beforeBeginBlobDeletion?.(digest);
          const won = await target.beginBlobDeletion(digest, generation);
          if (won) await hooks.afterBeginBlobDeletion?.(digest);
          return won;
        };
      }
      if (property === 'getBlob' && hooks.beforeGetBlob) {
        return async (digest: Digest) => {
          await hooks.beforeGetBlob?.(digest);
          return target.getBlob(digest);
        };
      }
      const value = Reflect.get(target, property, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

/** Runs `before.delete` ahead of the real delete (which it may fail or hold back). */
function wrapBlobStore(
  blobs: BlobStore,
  before: { delete: (digest: Digest) => Promise<void> },
): BlobStore {
  return {
    stat: (digest) => blobs.stat(digest),
    read: (digest, range) => blobs.read(digest, range),
    write: (body, expected) => blobs.write(body, expected),
    delete: async (digest) => {
      await before.delete(digest);
      await blobs.delete(digest);
    },
    list: () => blobs.list(),
  };
}

function deferred() {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}
