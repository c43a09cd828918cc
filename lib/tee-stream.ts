import { Transform, type TransformCallback, type Writable } from 'node:stream';
import { joinChunks } from './coalesce.ts';

export interface TeeOptions {
  /** Gather chunks into pieces of at least this many bytes before passing them on. */
  coalesceBytes?: number;
  /** Sees every piece that passes (progress counting). */
  onPiece?: (piece: Buffer) => void;
  /**
   * A copy that has not taken a piece for this long is dropped (destroyed), so a stalled reader
   * of the copy (a client) cannot hold the main stream (a download others wait for) forever.
   */
  copyStallMs?: number;
}

/**
 * Passes bytes through unchanged while a copy feeds a side consumer (layer statistics, a
 * client), honouring the copy's backpressure. The copy never fails the main stream: once it
 * errors or closes it is dropped. It is ended with the main stream, and destroyed only when the
 * main stream fails.
 * Coalescing helps when each piece downstream costs a thread-pool round trip (file writes):
 * sockets deliver 16-64 KiB chunks.
 */
export class TeeStream extends Transform {
  #copy: Writable | undefined;
  readonly #coalesceBytes: number;
  readonly #onPiece: ((piece: Buffer) => void) | undefined;
  readonly #copyStallMs: number | undefined;
  #pending: Buffer[] = [];
  #pendingBytes = 0;

  constructor(copy: Writable | undefined, options: TeeOptions = {}) {
    super(options.coalesceBytes ? { highWaterMark: options.coalesceBytes } : {});
    this.#copy = copy;
    this.#coalesceBytes = options.coalesceBytes ?? 0;
    this.#onPiece = options.onPiece;
    this.#copyStallMs = options.copyStallMs;
    const drop = () => {
      this.#copy = undefined;
    };
    copy?.on('error', drop);
    copy?.on('close', drop);
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
    const piece = joinChunks(this.#pending, this.#pendingBytes);
    this.#pending = [];
    this.#pendingBytes = 0;
    this.#onPiece?.(piece);
    const copy = this.#copy;
    if (copy && !copy.write(piece)) {
      const stalled =
        this.#copyStallMs === undefined
          ? undefined
          : setTimeout(
              () => copy.destroy(new Error('the copy stopped reading')),
              this.#copyStallMs,
            );
      const resume = () => {
        clearTimeout(stalled);
        copy.off('drain', resume);
        copy.off('error', resume);
        copy.off('close', resume);
        callback(null, piece);
      };
      copy.on('drain', resume);
      copy.on('error', resume);
      copy.on('close', resume);
      return;
    }
    callback(null, piece);
  }
}
