import { spawnSync } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { blobPaths, FsBlobStore } from '../lib/adapters/fs-blob-store.ts';
import { digestHex, sha256 } from '../lib/digest.ts';
import { DigestMismatchError } from '../lib/errors.ts';
import {
  blobStoreConformance,
  chunked,
  failingSource,
  listAll,
  readAll,
} from './conformance/blob-store-suite.ts';
import { whenMissing } from './support/tmp.ts';

async function tempDataDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'image-cache-fs-'));
}

blobStoreConformance('FsBlobStore', async () => {
  const dir = await tempDataDir();
  return {
    store: new FsBlobStore(dir),
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
});

describe('FsBlobStore specifics', () => {
  let dir: string;
  let store: FsBlobStore;
  beforeEach(async () => {
    dir = await tempDataDir();
    store = new FsBlobStore(dir);
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const tempFiles = async () => readdir(join(dir, 'blobs', 'tmp')).catch(whenMissing<string[]>([]));

  it('lays blobs out as <data>/blobs/sha256/<hex>, like the S3 keys', async () => {
    const bytes = randomBytes(4096);
    const { digest } = await store.write(chunked(bytes, 1000));
    const path = join(dir, 'blobs', 'sha256', digestHex(digest));
    expect(store.paths.blob(digest)).toBe(path);
    expect((await readFile(path)).equals(bytes)).toBe(true);
    expect(await tempFiles()).toEqual([]);
  });

  it('leaves no temp file behind after a mismatch, a short body or a failing source', async () => {
    const bytes = randomBytes(100_000);
    const digest = sha256(bytes);
    await expect(store.write(chunked(bytes), { digest: sha256('other') })).rejects.toBeInstanceOf(
      DigestMismatchError,
    );
    await expect(
      store.write(chunked(bytes), { digest, size: bytes.length + 1 }),
    ).rejects.toBeInstanceOf(DigestMismatchError);
    await expect(
      store.write(failingSource(bytes.subarray(0, 10), new Error('reset'))),
    ).rejects.toThrow('reset');
    expect(await tempFiles()).toEqual([]);
    expect(await readdir(join(dir, 'blobs', 'sha256'))).toEqual([]);
  });

  it('streams into a temp file first: the blob appears only once the body ended', async () => {
    const bytes = randomBytes(64 * 1024);
    const digest = sha256(bytes);
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const { Readable } = await import('node:stream');
    const source = Readable.from(
      (async function* () {
        yield bytes.subarray(0, 1000);
        await gate;
        yield bytes.subarray(1000);
      })(),
    );
    const writing = store.write(source, { digest });
    // Wait until the first chunk reached the temp file.
    while ((await tempFiles()).length === 0) await new Promise((r) => setTimeout(r, 5));
    expect(await store.stat(digest)).toBeUndefined();
    release();
    expect(await writing).toEqual({ digest, size: bytes.length });
    expect(await tempFiles()).toEqual([]);
  });

  it('lists only well-formed blob names, skipping junk and temp files', async () => {
    const { digest } = await store.write(chunked(randomBytes(10)));
    const sha = join(dir, 'blobs', 'sha256');
    await writeFile(join(sha, 'README'), 'not a blob');
    await writeFile(join(sha, digestHex(digest).toUpperCase()), 'wrong case');
    await writeFile(join(sha, `${digestHex(digest)}.part`), 'suffix');
    await mkdir(join(sha, 'a'.repeat(64)));
    await writeFile(join(dir, 'blobs', 'tmp', 'crashed.part'), 'left over');
    expect((await listAll(store)).map((b) => b.digest)).toEqual([digest]);
  });

  it('keeps a started read whole when the blob is deleted or rewritten meanwhile', async () => {
    const bytes = randomBytes(2 * 1024 * 1024);
    const { digest } = await store.write(chunked(bytes));
    const stream = await store.read(digest);
    await store.write(chunked(bytes, 4096), { digest });
    await store.delete(digest);
    expect((await readAll(stream)).equals(bytes)).toBe(true);
  });

  it('sweeps temp files of dead writers at once, and others only once idle long enough', async () => {
    const tmp = join(dir, 'blobs', 'tmp');
    await mkdir(tmp, { recursive: true });
    // Our own name shows the host tag and our nonce; other owners are built around them.
    const own = basename(blobPaths(dir).tempFile());
    const [host, pid, nonce] = own.split('-') as [string, string, string];
    expect(Number(pid)).toBe(process.pid);
    const exited = spawnSync(process.execPath, ['-e', '']).pid!;
    const names = {
      own,
      ownPreviousLife: `${host}-${pid}-${nonce === 'abcdef12' ? '21fedcba' : 'abcdef12'}-${randomUUID()}.part`,
      deadProcess: `${host}-${exited}-0badc0de-${randomUUID()}.part`,
      otherHost: `${host === 'ffffffff' ? '00000000' : 'ffffffff'}-1-0badc0de-${randomUUID()}.part`,
      legacyFresh: `${randomUUID()}.part`,
      legacyIdle: `${randomUUID()}.part`,
    };
    for (const name of Object.values(names)) await writeFile(join(tmp, name), 'xyz');
    const hourAgo = new Date(Date.now() - 3_600_000);
    await utimes(join(tmp, names.legacyIdle), hourAgo, hourAgo);

    expect(await store.sweepStaging(10 * 60_000)).toEqual({ files: 3, bytes: 9 });
    expect((await readdir(tmp)).sort()).toEqual(
      [names.own, names.otherHost, names.legacyFresh].sort(),
    );
    // Idle long enough, any writer's file goes, our own included.
    expect(await store.sweepStaging(0, Date.now() + 1000)).toEqual({ files: 3, bytes: 9 });
    expect(await readdir(tmp)).toEqual([]);
    expect(await new FsBlobStore(join(dir, 'missing')).sweepStaging(0)).toEqual({
      files: 0,
      bytes: 0,
    });
  });

  it('lists nothing for a data folder that does not exist yet', async () => {
    expect(await listAll(new FsBlobStore(join(dir, 'nothing-here')))).toEqual([]);
  });
});
