/**
 * What a stored archive member is as a layer, learned while it streams: its compression, its
 * diff_id and Docker's size (regular file bytes). An uncompressed tar is only walked header by
 * header (its diff_id is the digest the store computes anyway), so the common case of `docker
 * save` layers costs no second hash; gzip layers go through the full layer statistics.
 * The probe never errors: a member that is no tar (a config, a manifest) just has no result.
 */
import { Writable } from 'node:stream';
import type { Digest } from '../digest.ts';
import { countLayerFiles } from '../layer-stats.ts';
import { TarSizeWalker } from '../tar-size-walker.ts';

export interface LayerProbeResult {
  compression: 'gzip' | 'none' | 'zstd';
  /** Absent for uncompressed tars (it is the blob digest) and zstd (unreadable here). */
  diffId?: Digest;
  fileBytes?: number;
}

const SNIFF = 4;

export class LayerProbe extends Writable {
  /** Settles after 'finish' or destroy; rejects when the member is not a readable tar. */
  readonly result: Promise<LayerProbeResult>;
  #resolve!: (r: LayerProbeResult) => void;
  #reject!: (e: Error) => void;
  #head: Buffer[] = [];
  #headLength = 0;
  #inner: Writable | undefined;
  #mode: 'sniff' | 'forward' | 'discard' = 'sniff';
  #finish: (() => Promise<LayerProbeResult>) | undefined;

  constructor() {
    super({ highWaterMark: 1024 * 1024 });
    this.result = new Promise((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    this.result.catch(() => {});
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, callback: () => void): void {
    if (this.#mode === 'discard') {
      callback();
      return;
    }
    if (this.#mode === 'sniff') {
      this.#head.push(chunk);
      this.#headLength += chunk.length;
      if (this.#headLength < SNIFF) {
        callback();
        return;
      }
      chunk = Buffer.concat(this.#head);
      this.#head = [];
      if (!this.#start(chunk)) {
        callback();
        return;
      }
    }
    this.#forward(chunk, callback);
  }

  override _final(callback: () => void): void {
    if (this.#mode === 'sniff') {
      const head = Buffer.concat(this.#head);
      if (this.#start(head) && head.length > 0) this.#inner!.write(head);
    }
    const finish = this.#finish;
    if (this.#mode !== 'forward' || !finish) {
      callback();
      return;
    }
    this.#inner!.end();
    finish().then(this.#resolve, this.#reject).finally(callback);
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.#inner?.destroy();
    this.#reject(error ?? new Error('member stream closed before its end'));
    callback(null);
  }

  /** Picks the reader from the magic number; false when the bytes need no reading. */
  #start(head: Buffer): boolean {
    if (head[0] === 0x28 && head[1] === 0xb5 && head[2] === 0x2f && head[3] === 0xfd) {
      this.#mode = 'discard';
      this.#resolve({ compression: 'zstd' });
      return false;
    }
    if (head[0] === 0x1f && head[1] === 0x8b) {
      const counter = countLayerFiles();
      this.#inner = counter.stream;
      this.#finish = async () => {
        const stats = await counter.result;
        if (stats.compression === 'zstd') return { compression: 'zstd' };
        return { compression: 'gzip', diffId: stats.diffId, fileBytes: stats.fileBytes };
      };
    } else {
      const walker = new TarSizeWalker();
      const done = new Promise<void>((resolve, reject) => {
        walker.on('finish', resolve);
        walker.on('error', reject);
      });
      done.catch(() => {});
      this.#inner = walker;
      this.#finish = async () => {
        await done;
        return { compression: 'none', fileBytes: walker.fileBytes };
      };
    }
    this.#inner.on('error', (error: Error) => {
      // Not a tar after all: stop parsing, keep swallowing the bytes.
      this.#mode = 'discard';
      this.#reject(error);
    });
    this.#mode = 'forward';
    return true;
  }

  #forward(chunk: Buffer, callback: () => void): void {
    const inner = this.#inner!;
    if (inner.write(chunk)) {
      callback();
      return;
    }
    const release = () => {
      inner.off('drain', release);
      inner.off('error', release);
      callback();
    };
    inner.on('drain', release);
    inner.on('error', release);
  }
}
