import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SqliteCatalog } from '../lib/adapters/sqlite-catalog.ts';
import { sha256 } from '../lib/digest.ts';
import { BlobNotLiveError } from '../lib/errors.ts';
import {
  addBlobs,
  catalogConformance,
  commitOf,
  imageFixture,
} from './conformance/catalog-suite.ts';

const run = promisify(execFile);
const TOUCHES = 300;

catalogConformance('SqliteCatalog (:memory:)', async () => {
  const catalog = new SqliteCatalog(':memory:');
  return { catalog, cleanup: async () => catalog.close() };
});

catalogConformance('SqliteCatalog (file)', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'image-cache-sqlite-'));
  const catalog = new SqliteCatalog(join(dir, 'catalog.db'));
  return {
    catalog,
    cleanup: async () => {
      catalog.close();
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
      expect(raw.pragma('user_version', { simple: true })).toBe(1);
      expect(raw.pragma('journal_mode', { simple: true })).toBe('wal');
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

  describe('garbage collection transitions', () => {
    it('lists blob records', async () => {
      const catalog = openCatalog();
      await catalog.addBlob({ digest: sha256('b'), size: 2, unpackedSize: 3 }, 1);
      await catalog.addBlob({ digest: sha256('a'), size: 1 }, 1);
      const listed = await catalog.listBlobs();
      expect(listed.map((b) => b.digest).sort()).toEqual([sha256('a'), sha256('b')].sort());
      expect(listed.find((b) => b.digest === sha256('b'))).toMatchObject({ unpackedSize: 3 });
    });

    it('loses to a writer that touched the blob after the generation was observed', async () => {
      const catalog = openCatalog();
      const digest = sha256('raced');
      await catalog.addBlob({ digest, size: 1 }, 1);
      const observed = (await catalog.getBlob(digest))!.generation;
      expect(await catalog.touchBlob(digest, 2)).toBe('live');
      expect(await catalog.beginBlobDeletion(digest, observed)).toBe(false);
      expect(await catalog.getBlob(digest)).toMatchObject({ state: 'live' });
      expect(await catalog.beginBlobDeletion(sha256('absent'), 1)).toBe(false);
    });

    it('treats a deleting blob as absent for writers until the deletion finished', async () => {
      const catalog = openCatalog();
      const image = imageFixture('gc');
      await addBlobs(catalog, image, 1);
      const victim = image.layers[1]!;
      expect(await catalog.beginBlobDeletion(victim, 1)).toBe(true);
      // Only one collector can win the transition.
      expect(await catalog.beginBlobDeletion(victim, 1)).toBe(false);

      expect(await catalog.touchBlob(victim, 5)).toBe('deleting');
      expect(await catalog.addBlob({ digest: victim, size: 100 }, 5)).toBe('deleting');
      const failure = catalog.commitImage(commitOf(image, 'latest', 5));
      await expect(failure).rejects.toBeInstanceOf(BlobNotLiveError);
      await expect(failure).rejects.toMatchObject({ digests: [victim] });
      expect(await catalog.listTags()).toEqual([]);
      expect(await catalog.getManifest(image.manifest.digest)).toBeUndefined();
      expect(await catalog.getBlob(image.config)).toMatchObject({ generation: 1, touchedAt: 1 });
      expect(await catalog.getBlob(victim)).toMatchObject({ state: 'deleting', generation: 1 });

      await catalog.finishBlobDeletion(victim);
      expect(await catalog.getBlob(victim)).toBeUndefined();
      expect(await catalog.touchBlob(victim, 6)).toBe('absent');
      expect(await catalog.addBlob({ digest: victim, size: 100 }, 7)).toBe('live');
      expect(await catalog.getBlob(victim)).toMatchObject({ state: 'live', generation: 1 });
      await catalog.commitImage(commitOf(image, 'latest', 8));
      expect(await catalog.getTag('docker.io/library/alpine', 'latest')).toBeDefined();
    });

    it('never drops a live record when finishing a deletion', async () => {
      const catalog = openCatalog();
      const digest = sha256('live');
      await catalog.addBlob({ digest, size: 1 }, 1);
      await catalog.finishBlobDeletion(digest);
      expect(await catalog.getBlob(digest)).toMatchObject({ state: 'live' });
    });
  });
});
