import { Transform, type TransformCallback } from 'node:stream';

/** `chunks` (of `length` bytes in all) as one buffer, without a copy when there is only one. */
export function joinChunks(chunks: readonly Buffer[], length: number): Buffer {
  return chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, length);
}

/**
 * Joins small chunks (sockets deliver ~64 KiB) into larger ones before a costly consumer: each
 * zlib or fs write is a round trip through the thread pool, so 1 MiB writes cost a sixteenth
 * of the calls. Memory stays bounded by `size` plus one chunk.
 */
export class Coalescer extends Transform {
  readonly #size: number;
  #chunks: Buffer[] = [];
  #length = 0;

  constructor(size = 1024 * 1024) {
    super();
    this.#size = size;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, callback: TransformCallback): void {
    this.#chunks.push(chunk);
    this.#length += chunk.length;
    if (this.#length >= this.#size) this.#flushChunks();
    callback();
  }

  override _flush(callback: TransformCallback): void {
    this.#flushChunks();
    callback();
  }

  #flushChunks(): void {
    if (this.#length === 0) return;
    const joined = joinChunks(this.#chunks, this.#length);
    this.#chunks = [];
    this.#length = 0;
    this.push(joined);
  }
}
