import { createHash, type Hash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import type { Digest } from './digest.ts';
import { DigestMismatchError } from './errors.ts';

export interface Expected {
  digest?: Digest;
  size?: number;
}

/**
 * A pass-through that hashes and counts what flows through it. It fails as soon as more bytes
 * than `expected.size` arrive, and at the end when the size or the sha256 differ, so a consumer
 * that commits only after the stream finished cleanly never commits bad bytes.
 * After 'finish', `digest` and `size` hold what was seen.
 */
export class VerifyingStream extends Transform {
  readonly expected: Expected;
  /** Label used in error messages, e.g. "blob sha256:ab.. from docker.io/library/nginx". */
  readonly label: string;
  #hash: Hash | undefined = createHash('sha256');
  #size = 0;
  #digest: Digest | undefined;

  /**
   * `hash: false` (only without an expected digest) checks the size alone: for a producer whose
   * consumer hashes the same bytes anyway, such as a blob store's write.
   */
  constructor(expected: Expected = {}, label = 'blob', options: { hash?: boolean } = {}) {
    super();
    this.expected = expected;
    this.label = label;
    if (options.hash === false && expected.digest === undefined) this.#hash = undefined;
  }

  get size(): number {
    return this.#size;
  }

  /** The sha256 of everything seen; only available after the stream ended. */
  get digest(): Digest {
    if (!this.#digest) throw new Error('digest read before the stream ended');
    return this.#digest;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.#size += chunk.length;
    if (this.expected.size !== undefined && this.#size > this.expected.size) {
      callback(
        new DigestMismatchError(
          `${this.label}: more than the expected ${this.expected.size} bytes`,
        ),
      );
      return;
    }
    this.#hash?.update(chunk);
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    const digest = this.#hash ? (`sha256:${this.#hash.digest('hex')}` as Digest) : undefined;
    this.#digest = digest;
    if (this.expected.size !== undefined && this.#size !== this.expected.size) {
      callback(
        new DigestMismatchError(
          `${this.label}: expected ${this.expected.size} bytes, got ${this.#size}`,
        ),
      );
      return;
    }
    if (this.expected.digest !== undefined && digest !== this.expected.digest) {
      callback(
        new DigestMismatchError(`${this.label}: expected ${this.expected.digest}, got ${digest}`),
      );
      return;
    }
    callback();
  }
}

/** Checks bytes already in memory (manifests, configs) against a digest and size. */
export function verifyBytes(bytes: Uint8Array, expected: Expected, label: string): Digest {
  const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}` as Digest;
  if (expected.size !== undefined && bytes.length !== expected.size) {
    throw new DigestMismatchError(`${label}: expected ${expected.size} bytes, got ${bytes.length}`);
  }
  if (expected.digest !== undefined && digest !== expected.digest) {
    throw new DigestMismatchError(`${label}: expected ${expected.digest}, got ${digest}`);
  }
  return digest;
}
