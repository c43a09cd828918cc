import { Transform, type TransformCallback } from 'node:stream';

/**
 * A blob's bytes for a client while they are still being verified: everything passes at once but
 * the latest piece, which is held until the whole blob proved right. A blob that fails its
 * digest or size ends the client's stream with an error, so no client ever receives all the
 * bytes of a wrong blob (a response cut short is one the client throws away).
 */
export class VerifiedFeed extends Transform {
  #held: Buffer | undefined;
  #verdict: Promise<unknown> | undefined;
  #onVerdict: (() => void) | undefined;

  constructor() {
    super({ highWaterMark: 1024 * 1024 });
  }

  /** Hands over the promise that settles once the bytes were verified (or refused). */
  settle(verdict: Promise<unknown>): void {
    this.#verdict = verdict;
    // A refusal before the end: the client must not wait for bytes that will not come.
    verdict.catch((error: Error) => this.destroy(error));
    this.#onVerdict?.();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, callback: TransformCallback): void {
    const previous = this.#held;
    this.#held = chunk;
    callback(null, previous);
  }

  override _flush(callback: TransformCallback): void {
    const finish = () => {
      this.#verdict!.then(
        () => callback(null, this.#held),
        (error: Error) => callback(error),
      );
    };
    if (this.#verdict) finish();
    else this.#onVerdict = finish;
  }
}
