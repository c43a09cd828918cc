import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SCHEMA_VERSION, SqliteCatalog } from '../lib/adapters/sqlite-catalog.ts';
import { sha256 } from '../lib/digest.ts';
import { catalogConformance } from './conformance/catalog-conformance.ts';
import { gcReport } from './conformance/gc-report-log-suite.ts';
import { addBlobs, commitOf, imageFixture } from './conformance/image-catalog-suite.ts';

const run = promisify(execFile);
const TOUCHES = 300;

catalogConformance('SqliteCatalog (:memory:)', async () => {
  const catalog = new SqliteCatalog(':memory:');
  return { store: catalog, cleanup: async () => catalog.close() };
});

catalogConformance('SqliteCatalog (file)', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'image-cache-sqlite-'));
  const catalog = new SqliteCatalog(join(dir, 'catalog.db'));
  const others: SqliteCatalog[] = [];
  return {
    store: catalog,
    another: async () => {
      others.push(new SqliteCatalog(join(dir, 'catalog.db')));
      return others.at(-1)!;
    },
    cleanup: async () => {
      for (const other of [catalog, ...others]) other.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
});

describe('SqliteCatalog specifics', () => {
  let dir: string;
  let file: string;
  const open: SqliteCatalog[] = [];
  const openCatalog = () => {
    const catalog = new SqliteCatalog(file);
    open.push(catalog);
    return catalog;
  };
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'image-cache-sqlite-'));
    file = join(dir, 'catalog.db');
  });
  afterEach(async () => {
    for (const catalog of open.splice(0)) catalog.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('creates the schema once, in WAL mode, and reopens an existing file', () => {
    openCatalog();
    openCatalog();
    const raw = new Database(file, { readonly: true });
    try {
      expect(raw.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
      expect(raw.pragma('journal_mode', { simple: true })).toBe('wal');
    } finally {
      raw.close();
    }
  });

  it('upgrades a version 1 file in place, keeping its records', async () => {
    // A version 1 file: today's schema minus what version 2 added, as the first build wrote it.
    const image = imageFixture('v1');
    const v1 = openCatalog();
    await addBlobs(v1, image, 10);
    await v1.commitImage(commitOf(image, 'latest', 20));
    v1.close();
    open.pop();
    const raw = new Database(file);
    raw.exec(`DROP TABLE pins; DROP TABLE gc_reports; DROP TABLE tokens; DROP TABLE jobs;
      DROP TRIGGER blobs_generation_floor; DROP TABLE blob_generation_floor;
      DROP INDEX tags_manifest; DROP INDEX tags_source;
      DROP INDEX digest_refs_manifest; DROP INDEX digest_refs_digest;
      ALTER TABLE blobs DROP COLUMN diff_id; ALTER TABLE manifests DROP COLUMN pulls;
      DROP TRIGGER manifest_blobs_insert; DROP TRIGGER manifest_blobs_delete;
      DROP TABLE manifest_blobs; DROP TABLE stats_hours; DROP INDEX blobs_state_size;
      DROP TABLE watches; DROP TABLE registry_pauses; DROP TABLE background_pulls;`);
    raw.pragma('user_version = 1');
    raw.close();

    const upgraded = openCatalog();
    expect(await upgraded.getTag('docker.io/library/alpine', 'latest')).toMatchObject({
      manifest: image.manifest.digest,
    });
    expect(await upgraded.getBlob(image.config)).toMatchObject({ generation: 2 });
    // Manifests stored before pull counts existed start at none.
    expect(
      (await upgraded.manifestUsage([image.manifest.digest])).get(image.manifest.digest),
    ).toEqual({ lastUsedAt: 20, pulls: 0 });
    // The blob -> manifest index is filled from the manifests the file already held.
    expect(await upgraded.referencedBlobs([...image.manifest.blobs, sha256('other')])).toEqual(
      new Set(image.manifest.blobs),
    );
    await upgraded.addBlob({ digest: image.config, size: 1, diffId: image.config }, 30);
    expect(await upgraded.getBlob(image.config)).toMatchObject({ diffId: image.config });
    await upgraded.putPin({ name: 'p', manifest: image.manifest.digest, note: '', createdAt: 1 });
    await upgraded.addHour(3_600_000, { requests: 1 }, {});
    expect(await upgraded.listHours(0)).toHaveLength(1);
    expect(await upgraded.storageFigures()).toMatchObject({ images: 1 });
    expect(await upgraded.deleteManifestIfUnreferenced(image.manifest.digest)).toBe(false);
    await upgraded.putGcReport(gcReport('first', 1));
    expect(await upgraded.listGcReports(5)).toHaveLength(1);
    const hash = 'f'.repeat(64);
    await upgraded.putToken({ id: 'f'.repeat(12), hash, name: 't', scope: 'read', createdAt: 1 });
    expect(await upgraded.getTokenByHash(hash)).toMatchObject({ name: 't' });
    const watch = { name: 'docker.io/library/alpine:3', registry: 'docker.io', everyMs: 60_000 };
    await upgraded.putWatch({ ...watch, platforms: [], pin: true }, 1, 2);
    expect(await upgraded.listWatches()).toMatchObject([{ ...watch, nextCheckAt: 2 }]);
    expect(await upgraded.takeBackgroundPull('docker.io', 3_600_000, 1)).toBe(true);
    await upgraded.pauseRegistry({ registry: 'docker.io', until: 5, reason: '429' });
    expect(await upgraded.listRegistryPauses()).toHaveLength(1);
    const check = new Database(file, { readonly: true });
    try {
      expect(check.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
    } finally {
      check.close();
    }
  });

  it('drops background-pull hours older than a day when another hour is counted', async () => {
    const catalog = openCatalog();
    const hour = 3_600_000;
    expect(await catalog.takeBackgroundPull('docker.io', 10 * hour, 5)).toBe(true);
    expect(await catalog.takeBackgroundPull('ghcr.io', 20 * hour, 5)).toBe(true);
    expect(await catalog.takeBackgroundPull('docker.io', 35 * hour, 5)).toBe(true);
    expect(await catalog.backgroundPulls('docker.io', 10 * hour)).toBe(0);
    expect(await catalog.backgroundPulls('ghcr.io', 20 * hour)).toBe(1);
    const raw = new Database(file, { readonly: true });
    try {
      expect(
        raw.prepare('SELECT registry, hour FROM background_pulls ORDER BY hour').all(),
      ).toEqual([
        { registry: 'ghcr.io', hour: 20 * hour },
        { registry: 'docker.io', hour: 35 * hour },
      ]);
    } finally {
      raw.close();
    }
  });

  it('refuses a file written by a newer schema instead of guessing', () => {
    const raw = new Database(file);
    raw.pragma('user_version = 99');
    raw.close();
    expect(() => openCatalog()).toThrow(/schema version 99/);
  });

  it("lets two instances on one file see each other's writes", async () => {
    const a = openCatalog();
    const b = openCatalog();
    const image = imageFixture('shared');
    await addBlobs(a, image, 10);
    expect(await b.getBlob(image.config)).toMatchObject({ generation: 1 });
    await b.commitImage(commitOf(image, 'latest', 20));
    expect(await a.getTag('docker.io/library/alpine', 'latest')).toMatchObject({
      manifest: image.manifest.digest,
    });
    expect(await a.getBlob(image.config)).toMatchObject({ generation: 2, touchedAt: 20 });
    expect(existsSync(`${file}-wal`)).toBe(true);
  });

  it('counts every touch from several processes sharing the file', async () => {
    const digest = sha256('multi-process');
    await openCatalog().addBlob({ digest, size: 1 }, 0);
    const module = new URL('../lib/adapters/sqlite-catalog.ts', import.meta.url).href;
    // Processes take a while to boot tsx; a shared start time makes their writes overlap.
    const startAt = Date.now() + 3000;
    const script = `
      const { SqliteCatalog } = await import(${JSON.stringify(module)});
      const catalog = new SqliteCatalog(${JSON.stringify(file)});
      while (Date.now() < ${startAt}) await new Promise((r) => setTimeout(r, 1));
      for (let i = 0; i < ${TOUCHES}; i++) {
        if ((await catalog.touchBlob(${JSON.stringify(digest)}, i)) !== 'live') process.exit(2);
      }
      catalog.close();`;
    const workers = Array.from({ length: 3 }, () =>
      run(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script]),
    );
    await Promise.all(workers);
    expect((await openCatalog().getBlob(digest))?.generation).toBe(1 + 3 * TOUCHES);
  });
});
