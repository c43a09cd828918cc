import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { createWriteStream, type WriteStream } from 'node:fs';
import { mkdir, open, opendir, readdir, rename, rm, stat } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { type Digest, digestHex } from '../digest.ts';
import { InvalidArgumentError, NotFoundError, StorageFullError } from '../errors.ts';
import type {
  BlobStore,
  ByteRange,
  ListedBlob,
  StagingSweeper,
  StoredBlob,
  SweptStaging,
} from '../ports/blob-store.ts';
import { VerifyingStream } from '../verify.ts';

const READ_CHUNK = 256 * 1024;
/** Files stat'ed at once while listing. */
const LIST_BATCH = 64;
const HEX_NAME = /^[a-f0-9]{64}$/;

/**
 * Who writes a temp file: this host (hashed), this process and a nonce for this process's life,
 * so a sweep can tell a dead writer's leftovers (reclaimed at once) from a live writer's file.
 * The nonce tells a restarted server that got its predecessor's pid (pid 1 in a container)
 * from that predecessor.
 */
const HOST_TAG = createHash('sha256').update(hostname()).digest('hex').slice(0, 8);
const PROCESS_NONCE = randomBytes(4).toString('hex');
const TEMP_NAME = /^([0-9a-f]{8})-(\d+)-([0-9a-f]{8})-[0-9a-f-]+\.part$/;

/**
 * The one place that derives the on-disk layout (as distribution's paths.go does), so the
 * layout matches the S3 key scheme `blobs/sha256/<hex>` and no method builds paths by hand.
 * The temp folder sits under the same root so rename() never crosses a filesystem.
 */
export function blobPaths(root: string) {
  const blobs = join(root, 'blobs');
  const sha256 = join(blobs, 'sha256');
  const tmp = join(blobs, 'tmp');
  return {
    sha256,
    tmp,
    blob: (digest: Digest) => join(sha256, digestHex(digest)),
    tempFile: () => join(tmp, `${HOST_TAG}-${process.pid}-${PROCESS_NONCE}-${randomUUID()}.part`),
  };
}

/** Whether the process that named a temp file is certainly gone; unknown owners are not. */
function writerIsGone(name: string): boolean {
  const owner = TEMP_NAME.exec(name);
  if (!owner || owner[1] !== HOST_TAG) return false;
  const pid = Number(owner[2]);
  if (pid === process.pid) return owner[3] !== PROCESS_NONCE;
  try {
    process.kill(pid, 0);
    return false;
  } catch (error) {
    // EPERM: alive, but another user's.
    return isErrno(error, 'ESRCH');
  }
}

function isErrno(error: unknown, ...codes: string[]): boolean {
  return error instanceof Error && codes.includes((error as NodeJS.ErrnoException).code ?? '');
}

/**
 * Blobs as files under `<data>/blobs/sha256/<hex>` (invariant 1: write to temp, verify while
 * streaming, fsync, rename only after size and digest matched). Readers hold an open file
 * descriptor, so a concurrent rename-over (same content) or delete never cuts a read short.
 */
export class FsBlobStore implements BlobStore, StagingSweeper {
  readonly root: string;
  readonly paths: ReturnType<typeof blobPaths>;

  constructor(dataDir: string) {
    this.root = dataDir;
    this.paths = blobPaths(dataDir);
  }

  async stat(digest: Digest): Promise<StoredBlob | undefined> {
    try {
      const info = await stat(this.paths.blob(digest));
      return info.isFile() ? { digest, size: info.size } : undefined;
    } catch (error) {
      if (isErrno(error, 'ENOENT')) return undefined;
      throw error;
    }
  }

  async read(digest: Digest, range?: ByteRange): Promise<Readable> {
    // Opening eagerly turns ENOENT into NotFoundError here rather than as a late stream error.
    let handle: Awaited<ReturnType<typeof open>>;
    try {
      handle = await open(this.paths.blob(digest), 'r');
    } catch (error) {
      if (isErrno(error, 'ENOENT')) throw new NotFoundError(`blob ${digest} not found`);
      throw error;
    }
    try {
      // Larger reads: a thread-pool round trip and a socket write per 256 KiB, not per 64 KiB.
      if (!range) return handle.createReadStream({ highWaterMark: READ_CHUNK });
      const { size } = await handle.stat();
      const { start, end } = checkRange(range, size, digest);
      return handle.createReadStream({ start, end, highWaterMark: READ_CHUNK });
    } catch (error) {
      await handle.close();
      throw error;
    }
  }

  async write(
    body: Readable,
    expected: { digest?: Digest; size?: number } = {},
  ): Promise<StoredBlob> {
    const tempPath = this.paths.tempFile();
    const verifier = new VerifyingStream(expected, `blob ${expected.digest ?? '(unnamed)'}`);
    let committed = false;
    let file: WriteStream | undefined;
    // The source may fail while the folders are made, before pipeline() listens: without a
    // listener that error would escape as an uncaught exception and end the process.
    body.on('error', noteEarlyFailure);
    try {
      await mkdir(this.paths.tmp, { recursive: true });
      await mkdir(this.paths.sha256, { recursive: true });
      if (body.errored) throw body.errored;
      file = createWriteStream(tempPath, { flags: 'wx' });
      await pipeline(body, verifier, file);
      // fsync acts on the file, not the descriptor, so reopening after the stream closed its
      // own is enough (a FileHandle shared with a stream cannot be closed by us on Node 20).
      await fsyncPath(tempPath, 'r+');
      // VerifyingStream already failed the pipeline on a size or digest mismatch, so from here
      // the bytes are known to hash to `verifier.digest`.
      const digest = verifier.digest;
      await rename(tempPath, this.paths.blob(digest));
      committed = true;
      await fsyncPath(this.paths.sha256, 'r');
      return { digest, size: verifier.size };
    } catch (error) {
      // A failure before the pipeline started (mkdir, open) must still release the source,
      // e.g. an upstream socket; destroying an already ended stream is a no-op.
      body.destroy();
      if (isErrno(error, 'ENOSPC', 'EDQUOT')) {
        throw new StorageFullError(
          `no space left on the device holding ${this.paths.tmp} (${(error as NodeJS.ErrnoException).code}) while storing blob ${expected.digest ?? '(unnamed)'}: nothing was stored; free space and try again`,
          { cause: error },
        );
      }
      throw error;
    } finally {
      if (!committed) {
        // pipeline() settles on the source's error without waiting for the file to open: a
        // removal before the open would be undone by it, leaving the temp file behind.
        const opening = file;
        if (opening && !opening.closed) {
          await new Promise<void>((done) => opening.once('close', () => done()));
        }
        await rm(tempPath, { force: true });
      }
    }
  }

  async delete(digest: Digest): Promise<void> {
    await rm(this.paths.blob(digest), { force: true });
  }

  async *list(): AsyncIterable<ListedBlob> {
    let dir: Awaited<ReturnType<typeof opendir>>;
    try {
      dir = await opendir(this.paths.sha256);
    } catch (error) {
      if (isErrno(error, 'ENOENT')) return;
      throw error;
    }
    // opendir streams entries, so listing a million blobs does not build a million-entry array;
    // stats run a batch at a time, since one at a time leaves the disk and thread pool idle.
    let batch: string[] = [];
    for await (const entry of dir) {
      if (!entry.isFile() || !HEX_NAME.test(entry.name)) continue;
      batch.push(entry.name);
      if (batch.length < LIST_BATCH) continue;
      yield* await this.#statAll(batch);
      batch = [];
    }
    yield* await this.#statAll(batch);
  }

  async #statAll(names: string[]): Promise<ListedBlob[]> {
    const listed = await Promise.all(
      names.map(async (name): Promise<ListedBlob | undefined> => {
        try {
          const info = await stat(join(this.paths.sha256, name));
          return {
            digest: `sha256:${name}` as Digest,
            size: info.size,
            modifiedAt: Math.floor(info.mtimeMs),
          };
        } catch (error) {
          // Deleted between readdir and stat: it is simply no longer there.
          if (isErrno(error, 'ENOENT')) return undefined;
          throw error;
        }
      }),
    );
    return listed.filter((blob): blob is ListedBlob => blob !== undefined);
  }

  /**
   * Removes temp files left by writers that died: at once when their process is gone, else once
   * idle for `idleMs` (a write in progress keeps bumping its file's mtime).
   */
  async sweepStaging(idleMs: number, now = Date.now()): Promise<SweptStaging> {
    let names: string[];
    try {
      names = await readdir(this.paths.tmp);
    } catch (error) {
      if (isErrno(error, 'ENOENT')) return { files: 0, bytes: 0 };
      throw error;
    }
    const swept: SweptStaging = { files: 0, bytes: 0 };
    for (const name of names) {
      const path = join(this.paths.tmp, name);
      try {
        const info = await stat(path);
        if (!info.isFile()) continue;
        if (!writerIsGone(name) && info.mtimeMs >= now - idleMs) continue;
        await rm(path, { force: true });
        swept.files++;
        swept.bytes += info.size;
      } catch (error) {
        if (!isErrno(error, 'ENOENT')) throw error;
      }
    }
    return swept;
  }
}

/**
 * HTTP semantics: `end` is inclusive and clamped to the last byte; a start at or past the end
 * of the blob is unsatisfiable (S3 answers InvalidRange there too, so adapters agree).
 */
function checkRange(
  range: ByteRange,
  size: number,
  digest: Digest,
): { start: number; end: number } {
  const { start } = range;
  const end = range.end === undefined ? size - 1 : Math.min(range.end, size - 1);
  const valid =
    Number.isSafeInteger(start) &&
    start >= 0 &&
    (range.end === undefined || (Number.isSafeInteger(range.end) && range.end >= start));
  if (!valid) {
    throw new InvalidArgumentError(`invalid byte range ${start}-${range.end ?? ''} for ${digest}`);
  }
  if (start >= size) {
    throw new InvalidArgumentError(
      `byte range ${start}- not satisfiable: ${digest} has ${size} bytes`,
    );
  }
  return { start, end };
}

/** fsync of a file (its bytes) or a directory (a rename in it), so a crash cannot forget them. */
async function fsyncPath(path: string, flags: 'r' | 'r+'): Promise<void> {
  // Windows cannot open a directory for fsync; a rename is as durable as it gets there.
  if (flags === 'r' && process.platform === 'win32') return;
  const handle = await open(path, flags);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Keeps a source's error from going unhandled; the write reads it from `body.errored`. */
function noteEarlyFailure(): void {}
