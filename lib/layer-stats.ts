import { createHash } from 'node:crypto';
import { pipeline, Transform, type TransformCallback, Writable } from 'node:stream';
import * as zlib from 'node:zlib';
import { Coalescer } from './coalesce.ts';
import type { Digest } from './digest.ts';
import { TarSizeWalker } from './tar-size-walker.ts';

/**
 * What a layer holds, read while it streams: Docker shows the sum of the regular files'
 * sizes as the layer's (and the image's) size, and lists the sha256 of the uncompressed tar
 * as the layer's diff_id.
 */
export type LayerStats =
  | {
      compression: 'gzip' | 'zstd' | 'none';
      /** Sum of the sizes of the regular files (hard links, symlinks and dirs count 0). */
      fileBytes: number;
      fileCount: number;
      /** sha256 of the uncompressed tar, unless it was not asked for. */
      diffId: Digest | undefined;
      uncompressedSize: number;
    }
  | {
      /** zstd on a Node without a zstd decoder (before 22.15): sizes and diff_id stay unknown. */
      compression: 'zstd';
      fileBytes: undefined;
      fileCount: undefined;
      diffId: undefined;
      uncompressedSize: undefined;
    };

export interface LayerStatsCounter {
  /**
   * Pipe (a tee of) the layer's bytes in. It applies backpressure while it parses but never
   * errors: once the layer turns out unreadable it swallows the rest at once, so the stream it
   * copies from is never stalled or broken by it.
   */
  stream: Writable;
  /**
   * Settles once the stream ended (or was destroyed): rejects for corrupt gzip, a truncated
   * or invalid tar, or a stream destroyed before its end.
   */
  result: Promise<LayerStats>;
}

const GZIP_MAGIC = [0x1f, 0x8b];
const ZSTD_MAGIC = [0x28, 0xb5, 0x2f, 0xfd];
const SNIFF_BYTES = ZSTD_MAGIC.length;

/** Node 22.15 and 23.8 added zstd to zlib; Node 20 has none, so it is looked up, not imported. */
const createZstdDecompress = (
  zlib as unknown as { createZstdDecompress?: (options?: { chunkSize?: number }) => Transform }
).createZstdDecompress;

function startsWith(head: Buffer, magic: number[]): boolean {
  return head.length >= magic.length && magic.every((byte, i) => head[i] === byte);
}

export interface LayerStatsOptions {
  /**
   * Hash the uncompressed tar (the diff_id). `'compressed-only'` skips it for an uncompressed
   * layer, whose diff_id is the digest the blob store computes anyway.
   */
  diffId?: boolean | 'compressed-only';
}

export function countLayerFiles(options: LayerStatsOptions = {}): LayerStatsCounter {
  const stream = new LayerStatsStream({ diffId: options.diffId ?? true });
  return { stream, result: stream.result };
}

class LayerStatsStream extends Writable {
  readonly result: Promise<LayerStats>;
  #resolve!: (stats: LayerStats) => void;
  #reject!: (error: Error) => void;
  #settled = false;
  /** 'sniffing' until the first bytes tell the format; 'discard' after giving up or failing. */
  #mode: 'sniffing' | 'parsing' | 'discard' = 'sniffing';
  #head: Buffer[] = [];
  #headLength = 0;
  #input: Writable | undefined;
  #inner: Writable[] = [];
  /** A write callback held back until the parser drains. */
  #pending: (() => void) | undefined;
  #onSettled: (() => void) | undefined;

  readonly #options: Required<LayerStatsOptions>;

  constructor(options: Required<LayerStatsOptions>) {
    super({ highWaterMark: 1024 * 1024 });
    this.#options = options;
    this.result = new Promise<LayerStats>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    // Callers may read `result` only after the main stream finished; never crash meanwhile.
    this.result.catch(() => {});
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, callback: () => void): void {
    if (this.#mode === 'discard') {
      callback();
      return;
    }
    if (this.#mode === 'sniffing') {
      this.#head.push(chunk);
      this.#headLength += chunk.length;
      if (this.#headLength < SNIFF_BYTES) {
        callback();
        return;
      }
      const head = Buffer.concat(this.#head);
      this.#head = [];
      if (!this.#start(head)) {
        callback();
        return;
      }
      chunk = head;
    }
    this.#forward(chunk, callback);
  }

  override _final(callback: () => void): void {
    if (this.#mode === 'sniffing') {
      const head = Buffer.concat(this.#head);
      this.#head = [];
      if (this.#start(head) && head.length > 0) this.#input!.write(head);
    }
    if (this.#mode !== 'parsing' || this.#settled) {
      callback();
      return;
    }
    // 'finish' waits for the parser so that `result` is settled when the stream finished.
    this.#onSettled = callback;
    this.#input!.end();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.#fail(error ?? new Error('layer stream closed before its end'));
    callback(error);
  }

  /** Picks the format from the first bytes; false when the layer will not be parsed. */
  #start(head: Buffer): boolean {
    const zstd = startsWith(head, ZSTD_MAGIC);
    if (zstd && !createZstdDecompress) {
      this.#mode = 'discard';
      this.#settle({
        compression: 'zstd',
        fileBytes: undefined,
        fileCount: undefined,
        diffId: undefined,
        uncompressedSize: undefined,
      });
      return false;
    }
    const compression = zstd ? 'zstd' : startsWith(head, GZIP_MAGIC) ? 'gzip' : 'none';
    const wantHash =
      this.#options.diffId === true ||
      (this.#options.diffId === 'compressed-only' && compression !== 'none');
    const hash = wantHash ? createHash('sha256') : undefined;
    let uncompressedSize = 0;
    const tap = new Transform({
      transform(chunk: Buffer, _enc: BufferEncoding, callback: TransformCallback) {
        hash?.update(chunk);
        uncompressedSize += chunk.length;
        callback(null, chunk);
      },
    });
    const walker = new TarSizeWalker();
    // Large output chunks: zlib's default 16 KiB means a callback per 16 KiB on the main thread.
    const decompress =
      compression === 'gzip'
        ? zlib.createGunzip({ chunkSize: 256 * 1024 })
        : compression === 'zstd'
          ? createZstdDecompress!({ chunkSize: 256 * 1024 })
          : undefined;
    const coalescer = new Coalescer();
    this.#inner = decompress ? [coalescer, decompress, tap, walker] : [coalescer, tap, walker];
    this.#input = coalescer;
    this.#mode = 'parsing';
    // zlib can report an error after pipeline gave up on it (tar failed first, then the CRC):
    // a listener that outlives pipeline keeps such late errors from crashing the process.
    for (const stream of this.#inner) stream.on('error', (error: Error) => this.#fail(error));
    const done = (error?: Error | null): void => {
      if (error) {
        this.#fail(error);
        return;
      }
      this.#settle({
        compression,
        fileBytes: walker.fileBytes,
        fileCount: walker.fileCount,
        diffId: hash ? (`sha256:${hash.digest('hex')}` as Digest) : undefined,
        uncompressedSize,
      } as LayerStats);
    };
    if (decompress) pipeline(coalescer, decompress, tap, walker, done);
    else pipeline(coalescer, tap, walker, done);
    return true;
  }

  #forward(chunk: Buffer, callback: () => void): void {
    const input = this.#input!;
    if (input.write(chunk)) {
      callback();
      return;
    }
    const release = (): void => {
      input.off('drain', release);
      this.#pending = undefined;
      callback();
    };
    this.#pending = release;
    input.on('drain', release);
  }

  #settle(stats: LayerStats): void {
    if (this.#settled) return;
    this.#settled = true;
    this.#resolve(stats);
    this.#finishSettling();
  }

  #fail(error: Error): void {
    this.#mode = 'discard';
    if (!this.#settled) {
      this.#settled = true;
      this.#reject(error);
    }
    for (const stream of this.#inner) stream.destroy();
    this.#inner = [];
    this.#finishSettling();
  }

  #finishSettling(): void {
    this.#pending?.();
    const onSettled = this.#onSettled;
    this.#onSettled = undefined;
    onSettled?.();
  }
}
