/** A pass-through stream that reports the running byte count, for the transfer progress bars. */
import { Transform, type TransformCallback } from 'node:stream';

/**
 * `onCount` gets the bytes passed so far. With `expected`, a stream that ends short (or long)
 * fails at its end, so a server that died mid-body never leaves a partial file behind.
 */
export function byteCounter(onCount: (bytes: number) => void, expected?: number): Transform {
  let count = 0;
  return new Transform({
    transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback) {
      count += chunk.length;
      onCount(count);
      callback(null, chunk);
    },
    flush(callback: TransformCallback) {
      if (expected !== undefined && count !== expected) {
        callback(new Error(`the tarball was cut short: got ${count} of ${expected} bytes`));
      } else callback();
    },
  });
}
