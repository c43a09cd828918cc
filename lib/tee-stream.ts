import { Transform, type TransformCallback, type Writable } from 'node:stream';

export interface TeeOptions {
  /** Gather chunks into pieces of at least this many bytes before passing them on. */
  coalesceBytes?: number;
  /** Sees every piece that passes (progress counting). */
  onPiece?: (piece: Buffer) => void;
}

/**
 * Passes bytes through unchanged while a copy feeds a side consumer (layer statistics),
 * honouring the copy's backpressure. The copy never fails the main stream: once it errors it is
 * dropped. It is ended with the main stream, and destroyed only when the main stream fails.
 * Coalescing helps when each piece downstream costs a thread-pool round trip (file writes):
 * sockets deliver 16-64 KiB chunks.
 */
export class TeeStream extends Transform {
  #copy: Writable | undefined;
  readonly #coalesceBytes: number;
  readonly #onPiece: ((piece: Buffer) => void) | undefined;
  #pending: Buffer[] = [];
  #pendingBytes = 0;

  constructor(copy: Writable | undefined, options: TeeOptions = {}) {
    super(options.coalesceBytes ? { highWaterMark: options.coalesceBytes } : {});
    this.#copy = copy;
    this.#coalesceBytes = options.coalesceBytes ?? 0;
    this.#onPiece = options.onPiece;
    copy?.on('error', () => {
      this.#copy = undefined;
    });
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, callback: TransformCallback): void {
    this.#pending.push(chunk);
    this.#pendingBytes += chunk.length;
    if (this.#pendingBytes < this.#coalesceBytes) {
      callback();
      return;
    }
    this.#emit(callback);
  }

  override _flush(callback: TransformCallback): void {
    const end = (error?: Error | null, data?: Buffer) => {
      if (data) this.push(data);
      this.#copy?.end();
      callback(error);
    };
    if (this.#pendingBytes === 0) end();
    else this.#emit(end);
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    // Streams destroy themselves after a clean end too; only a failure stops the copy.
    if (error) this.#copy?.destroy();
    callback(error);
  }

  #emit(callback: (error?: Error | null, data?: Buffer) => void): void {
    const piece =
      this.#pending.length === 1
        ? this.#pending[0]!
        : Buffer.concat(this.#pending, this.#pendingBytes);
    this.#pending = [];
    this.#pendingBytes = 0;
    this.#onPiece?.(piece);
    const copy = this.#copy;
    if (copy && !copy.write(piece)) {
      const resume = () => {
        copy.off('drain', resume);
        copy.off('error', resume);
        callback(null, piece);
      };
      copy.on('drain', resume);
      copy.on('error', resume);
      return;
    }
    callback(null, piece);
  }
}
