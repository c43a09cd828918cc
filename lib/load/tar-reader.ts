/**
 * Safe iteration over an uploaded archive: counts and caps the bytes received (413) and, for a
 * gzip-wrapped tar, the bytes it expands to (gzip bombs), and turns every tar entry into either
 * a regular file with a stream, an in-archive link, or a refusal. Names are normalised once
 * here, so nothing downstream ever sees `..`, an absolute path, a device or a fifo.
 */
import { pipeline, Readable, Transform, type TransformCallback, type Writable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import tar, { type ExtractEvents } from 'tar-stream';
import { joinChunks } from '../coalesce.ts';
import { ImageCacheError, InvalidArgumentError } from '../errors.ts';

export interface LoadLimits {
  /** Bytes of the request body (compressed or not); more is a 413. */
  maxBodyBytes: number;
  /** Bytes of tar after gunzip; more is a 400 (gzip bomb). */
  maxExpandedBytes: number;
  /** Expanded / compressed beyond this, past `ratioFloorBytes`, is a 400 (gzip bomb). */
  maxRatio: number;
  ratioFloorBytes: number;
  /** Tar entries; every one costs a little bookkeeping. */
  maxEntries: number;
}

const GiB = 1024 * 1024 * 1024;
const COALESCE_BYTES = 256 * 1024;

export const DEFAULT_LOAD_LIMITS: LoadLimits = {
  maxBodyBytes: 64 * GiB,
  maxExpandedBytes: 64 * GiB,
  // gzip tops out near 1032:1; image tarballs (mostly already compressed or binary data) rarely
  // pass 10:1, and text-heavy uncompressed layers stay well below 100:1.
  maxRatio: 200,
  ratioFloorBytes: GiB,
  maxEntries: 200_000,
};

export class PayloadTooLargeError extends ImageCacheError {
  constructor(limit: number) {
    super('PAYLOAD_TOO_LARGE', `request body larger than the ${limit} bytes a load accepts`);
  }
}

export type ArchiveEntry =
  | { kind: 'file'; path: string; size: number; stream: Readable }
  /** A symlink or hard link; `target` is the archive path it names, already checked. */
  | { kind: 'link'; path: string; target: string };

export interface ArchiveStats {
  compression: 'gzip' | 'none';
  bodyBytes: number;
  tarBytes: number;
  /** Set when the archive stream itself failed (body limit, truncation, bad gzip or tar). */
  error?: Error;
}

/** `./a//b/` -> `a/b`; refuses absolute names and any `..` component. */
export function normalizeArchivePath(name: string, what = 'entry'): string {
  if (name.includes('\0')) throw new InvalidArgumentError(`archive ${what} name contains NUL`);
  if (name.startsWith('/') || /^[a-zA-Z]:[\\/]/.test(name)) {
    throw new InvalidArgumentError(
      `archive ${what} ${JSON.stringify(name)} has an absolute path; refusing to load`,
    );
  }
  const parts = name.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.some((p) => p === '..')) {
    throw new InvalidArgumentError(
      `archive ${what} ${JSON.stringify(name)} contains "..": path traversal is refused`,
    );
  }
  return parts.join('/');
}

/** A symlink's target, resolved against the link's folder; it must stay inside the archive. */
function resolveSymlink(path: string, linkname: string): string {
  if (linkname.startsWith('/')) {
    throw new InvalidArgumentError(
      `symlink ${path} points to the absolute path ${JSON.stringify(linkname)}, outside the archive`,
    );
  }
  const parts = path.split('/').slice(0, -1);
  for (const part of linkname.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (parts.length === 0) {
        throw new InvalidArgumentError(
          `symlink ${path} points to ${JSON.stringify(linkname)}, outside the archive`,
        );
      }
      parts.pop();
    } else parts.push(part);
  }
  return parts.join('/');
}

function hardlinkTarget(path: string, linkname: string): string {
  try {
    return normalizeArchivePath(linkname, 'hard link target');
  } catch {
    throw new InvalidArgumentError(
      `hard link ${path} points to ${JSON.stringify(linkname)}, outside the archive`,
    );
  }
}

/**
 * Counts the body's bytes, fails past the limit, and gathers socket-sized chunks (16-64 KiB)
 * into 256 KiB pieces: every later stage (tar parsing, hashing, file writes through the thread
 * pool) pays per chunk, and at socket-sized chunks that overhead, not the work, bounds a load.
 */
class Counter extends Transform {
  bytes = 0;
  readonly #limit: number;
  readonly #tooMany: () => Error;
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  constructor(limit: number, tooMany: () => Error) {
    super({ highWaterMark: COALESCE_BYTES });
    this.#limit = limit;
    this.#tooMany = tooMany;
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, callback: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.bytes > this.#limit) {
      callback(this.#tooMany());
      return;
    }
    this.#pending.push(chunk);
    this.#pendingBytes += chunk.length;
    if (this.#pendingBytes >= COALESCE_BYTES) this.#release();
    callback();
  }
  override _flush(callback: TransformCallback): void {
    if (this.#pendingBytes > 0) this.#release();
    callback();
  }
  #release(): void {
    const piece = joinChunks(this.#pending, this.#pendingBytes);
    this.#pending = [];
    this.#pendingBytes = 0;
    this.push(piece);
  }
}

/** Caps what a gzip stream expands to, absolutely and relative to the compressed bytes seen. */
class ExpansionGuard {
  bytes = 0;
  error: Error | undefined;
  readonly #limits: LoadLimits;
  readonly #compressed: Counter;
  constructor(limits: LoadLimits, compressed: Counter) {
    this.#limits = limits;
    this.#compressed = compressed;
  }
  check(length: number): void {
    this.bytes += length;
    const { maxExpandedBytes, maxRatio, ratioFloorBytes } = this.#limits;
    if (this.bytes > maxExpandedBytes) {
      this.error = new InvalidArgumentError(
        `compressed archive expands beyond ${maxExpandedBytes} bytes; refusing (gzip bomb?)`,
      );
    } else if (this.bytes > ratioFloorBytes && this.bytes > maxRatio * this.#compressed.bytes) {
      this.error = new InvalidArgumentError(
        `compressed archive expands more than ${maxRatio}:1; refusing (gzip bomb?)`,
      );
    }
  }
}

/**
 * Decides by magic number: a plain tar passes through untouched (no extra hop per chunk), gzip
 * is expanded through a guarded gunzip, other compressions are refused by name.
 */
class Decompressor extends Transform {
  compression: 'gzip' | 'none' | undefined;
  readonly #limits: LoadLimits;
  readonly #compressed: Counter;
  #head: Buffer[] = [];
  #headLength = 0;
  #gunzip: ReturnType<typeof createGunzip> | undefined;
  guard: ExpansionGuard | undefined;

  constructor(limits: LoadLimits, compressed: Counter) {
    super({ highWaterMark: COALESCE_BYTES });
    this.#limits = limits;
    this.#compressed = compressed;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, callback: TransformCallback): void {
    if (this.compression === 'none') {
      callback(null, chunk);
      return;
    }
    if (this.compression === undefined) {
      this.#head.push(chunk);
      this.#headLength += chunk.length;
      if (this.#headLength < 6) {
        callback();
        return;
      }
      chunk = Buffer.concat(this.#head);
      this.#head = [];
      try {
        this.#decide(chunk);
      } catch (error) {
        callback(error as Error);
        return;
      }
      if (this.compression === 'none') {
        callback(null, chunk);
        return;
      }
    }
    if (this.#gunzip!.write(chunk)) callback();
    else this.#gunzip!.once('drain', () => callback());
  }

  override _read(size: number): void {
    this.#gunzip?.resume();
    super._read(size);
  }

  override _flush(callback: TransformCallback): void {
    if (this.compression === undefined) {
      const head = Buffer.concat(this.#head);
      try {
        this.#decide(head);
      } catch (error) {
        callback(error as Error);
        return;
      }
      if (this.compression === 'none') {
        callback(null, head.length > 0 ? head : undefined);
        return;
      }
      this.#gunzip!.write(head);
    }
    if (!this.#gunzip) {
      callback();
      return;
    }
    this.#gunzip.once('end', () => callback());
    this.#gunzip.end();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.#gunzip?.destroy();
    callback(error);
  }

  #decide(head: Buffer): void {
    const magic = (...bytes: number[]) => bytes.every((b, i) => head[i] === b);
    if (magic(0x28, 0xb5, 0x2f, 0xfd) || magic(0x42, 0x5a, 0x68) || magic(0xfd, 0x37, 0x7a)) {
      throw new InvalidArgumentError(
        'archive is compressed with zstd, bzip2 or xz, which this server cannot read: send it uncompressed or gzip-compressed',
      );
    }
    if (!magic(0x1f, 0x8b)) {
      this.compression = 'none';
      return;
    }
    this.compression = 'gzip';
    const gunzip = createGunzip({ chunkSize: 256 * 1024 });
    const guard = new ExpansionGuard(this.#limits, this.#compressed);
    this.#gunzip = gunzip;
    this.guard = guard;
    gunzip.on('data', (data: Buffer) => {
      guard.check(data.length);
      if (guard.error) {
        this.destroy(guard.error);
        return;
      }
      if (!this.push(data)) gunzip.pause();
    });
    gunzip.on('error', (error: NodeJS.ErrnoException) =>
      this.destroy(
        new InvalidArgumentError(
          error.code === 'Z_BUF_ERROR'
            ? `archive is truncated: the gzip stream ends early (${error.message})`
            : `archive is not valid gzip: ${error.message}`,
        ),
      ),
    );
  }
}

type TarHeader = ExtractEvents['entry'][0];
type TarSource = ExtractEvents['entry'][1];

/**
 * A tar entry as a Node stream, attached to tar-stream's entry the moment the parser creates
 * it. tar-stream (streamx) emits an entry's `error` and `close` once, and an archive that ends
 * inside the entry destroys it in the same turn as it announced it, before whoever the entry is
 * yielded to has listened: that consumer, and a blob store writing the entry to a temp file,
 * would wait forever. A Node stream keeps its failure (`errored`), so `pipeline`, `finished`
 * and async iteration report it however late they start.
 */
class EntryStream extends Readable {
  readonly #source: TarSource;
  #ended = false;
  #discarding = false;

  constructor(source: TarSource, failure: (cause?: Error) => Error) {
    super({ highWaterMark: COALESCE_BYTES });
    this.#source = source;
    // The failure must not crash the process while nobody listens yet; it stays in `errored`.
    this.on('error', () => {});
    source.on('data', (chunk) => {
      if (!this.#discarding && !this.push(chunk as Buffer)) source.pause();
    });
    source.on('end', () => {
      this.#ended = true;
      if (!this.#discarding) this.push(null);
    });
    source.on('error', (error: Error) => this.destroy(failure(error)));
    source.on('close', () => {
      if (!this.#ended) this.destroy(failure());
    });
    source.pause();
  }

  override _read(): void {
    this.#source.resume();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    // A consumer that gave up on the entry must not stall the archive: the rest is skipped.
    if (!this.#ended) {
      this.#discarding = true;
      this.#source.resume();
    }
    callback(error);
  }
}

interface ArrivedEntry {
  header: TarHeader;
  stream: EntryStream;
  /** Lets tar-stream parse the next header. */
  next: () => void;
}

/**
 * Iterates the archive's entries. Each file entry's stream must be consumed (or resumed) before
 * the next entry arrives; it fails with the archive's error (truncation, limits, bad gzip) if
 * the archive breaks inside it. Directories and pax headers are skipped; devices, fifos and
 * unknown types are refused. `stats` is filled as the archive streams, and `stats.error` is set
 * as soon as the archive stream fails.
 */
export async function* readArchive(
  body: Readable,
  limits: LoadLimits,
  stats: ArchiveStats = { compression: 'none', bodyBytes: 0, tarBytes: 0 },
): AsyncGenerator<ArchiveEntry> {
  const counter = new Counter(
    limits.maxBodyBytes,
    () => new PayloadTooLargeError(limits.maxBodyBytes),
  );
  const decompressor = new Decompressor(limits, counter);
  const extract = tar.extract();
  const arrived: ArrivedEntry[] = [];
  let wake: (() => void) | undefined;
  let finished = false;
  let closing = false;
  let streamError: Error | undefined;
  /** The entry whose data is still arriving, to name it when the archive ends inside it. */
  let open: TarHeader | undefined;
  const signal = () => {
    const resolve = wake;
    wake = undefined;
    resolve?.();
  };
  const fail = (error: Error) => {
    // Once the consumer stopped (its own error, or done), closing the streams is no failure.
    if (closing || streamError) return;
    streamError = error;
    stats.error = archiveFailure(error, open);
    signal();
  };
  // Entries are taken from the event, not tar-stream's iterator, so that each is wrapped in the
  // very turn it is created, before the archive can fail underneath it.
  extract.on('entry', (header, source, next) => {
    open = header.size > 0 && header.type !== 'directory' ? header : undefined;
    source.on('end', () => {
      if (open === header) open = undefined;
    });
    const stream = new EntryStream(source, (cause) => {
      if (cause) fail(cause);
      return (
        stats.error ?? new Error(`the archive was closed before ${entryName(header)} was read`)
      );
    });
    arrived.push({ header, stream, next: () => next() });
    signal();
  });
  extract.on('error', fail);
  // The body is piped, not part of the pipeline: a refused archive must not destroy the request
  // (and its socket) before the answer was written; the route drains what is left instead.
  body.on('error', (error) => counter.destroy(error));
  body.pipe(counter);
  pipeline(counter, decompressor, extract as unknown as Writable, (error) => {
    if (error) fail(error);
    finished = true;
    signal();
  });
  const nextEntry = async (): Promise<ArrivedEntry | undefined> => {
    for (;;) {
      if (streamError) throw streamError;
      const entry = arrived.shift();
      if (entry) return entry;
      if (finished) return undefined;
      await new Promise<void>((resolve) => {
        wake = resolve;
      });
    }
  };
  let entries = 0;
  let previous: ArrivedEntry | undefined;
  try {
    for (;;) {
      previous?.next();
      previous = await nextEntry();
      if (!previous) break;
      const { header, stream: entry } = previous;
      stats.bodyBytes = counter.bytes;
      stats.compression = decompressor.compression ?? 'none';
      if (++entries > limits.maxEntries) {
        throw new InvalidArgumentError(`archive has more than ${limits.maxEntries} entries`);
      }
      const type: string | null = header.type;
      if (type === 'directory' || type === 'pax-global-header') {
        entry.resume();
        continue;
      }
      const path = normalizeArchivePath(header.name);
      if (path === '') throw new InvalidArgumentError('archive entry with an empty name');
      if (type === 'file' || type === 'contiguous-file') {
        yield { kind: 'file', path, size: header.size ?? 0, stream: entry };
        continue;
      }
      if (type === 'symlink') {
        entry.resume();
        yield { kind: 'link', path, target: resolveSymlink(path, header.linkname ?? '') };
        continue;
      }
      if (type === 'link') {
        entry.resume();
        yield { kind: 'link', path, target: hardlinkTarget(path, header.linkname ?? '') };
        continue;
      }
      const what =
        type === 'character-device' || type === 'block-device'
          ? 'a device'
          : type === 'fifo'
            ? 'a fifo'
            : `of unsupported type ${JSON.stringify(type)}`;
      throw new InvalidArgumentError(`archive entry ${path} is ${what}; refusing to load`);
    }
  } catch (error) {
    throw streamError ? (stats.error ?? archiveError(streamError)) : archiveError(error);
  } finally {
    closing = true;
    body.unpipe(counter);
    extract.destroy();
    for (const { stream } of arrived) stream.destroy();
    stats.bodyBytes = counter.bytes;
    stats.tarBytes = decompressor.guard?.bytes ?? counter.bytes;
  }
}

/** An entry's name for a message: quoted, and cut short (a pax header may make it megabytes). */
function entryName(header: TarHeader): string {
  const name = header.name.length > 200 ? `${header.name.slice(0, 200)}...` : header.name;
  return JSON.stringify(name);
}

/** The archive's failure for the client; a cut inside an entry names the entry. */
function archiveFailure(error: Error, open: TarHeader | undefined): Error {
  if (open && /Unexpected end of data/.test(error.message)) {
    return new InvalidArgumentError(
      `archive is truncated: it ends inside ${entryName(open)}, which declares ${open.size} bytes`,
    );
  }
  return archiveError(error);
}

/** The error to report for a failure of the archive stream, worded for the client. */
export function archiveError(error: unknown): Error {
  if (error instanceof ImageCacheError) return error;
  const message = (error as Error)?.message ?? String(error);
  if (/Unexpected end of data|premature close|aborted/i.test(message)) {
    return new InvalidArgumentError(`archive is truncated: ${message}`);
  }
  if (/Invalid tar header|unknown format|Invalid header|Header exceeds/i.test(message)) {
    return new InvalidArgumentError(`input is not a valid tar archive: ${message}`);
  }
  return new InvalidArgumentError(`cannot read the archive: ${message}`);
}
