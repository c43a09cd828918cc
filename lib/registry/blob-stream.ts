import type { Readable, Writable } from 'node:stream';
import type { Digest } from '../digest.ts';
import { UpstreamError } from '../errors.ts';
import { VerifyingStream } from '../verify.ts';
import { backoffDelay, isTransient, networkError, type RetryPolicy, type Sleep } from './retry.ts';

/** A response body and the offset of its first byte (0 for a 200, the range start for a 206). */
export interface BlobBody {
  body: Readable;
  start: number;
}

/** Opens the blob at `offset` (a Range request when > 0), with auth, redirects and retries. */
export type OpenBlob = (offset: number) => Promise<BlobBody>;

export interface ResumableOptions {
  policy: RetryPolicy;
  sleep: Sleep;
  /** For messages: `blob sha256:... of docker.io/library/nginx`. */
  label: string;
  /** False: check sizes only, the consumer hashes (see BlobFetchOptions). */
  hash?: boolean;
}

/**
 * Streams a blob through a VerifyingStream, reopening with `Range: bytes=<received>-` when the
 * transfer breaks. The caller already consumed the bytes received so far, so the output only
 * ever gets each offset once: a 206 continues where we stopped; a registry that ignores Range
 * and restarts at 0 has the prefix we already emitted discarded. The hash covers the emitted
 * bytes in order, so whatever the server did across attempts, a wrong result fails at the end.
 *
 * The first opening happens before this resolves, so 404 or 401 reject the call itself; later
 * failures destroy the returned stream.
 */
export async function openResumableBlob(
  open: OpenBlob,
  expected: { digest: Digest; size: number },
  options: ResumableOptions,
): Promise<Readable> {
  const first = await open(0);
  const out =
    options.hash === false
      ? new VerifyingStream({ size: expected.size }, options.label, { hash: false })
      : new VerifyingStream(expected, options.label);
  pump(open, first, out, expected.size, options).catch((err: unknown) => {
    // Only a bug lands here; it must fail the download, not the process.
    out.destroy(err instanceof Error ? err : new Error(String(err)));
  });
  return out;
}

function drained(out: Writable): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      out.off('drain', done);
      out.off('close', done);
      resolve();
    };
    out.on('drain', done);
    out.on('close', done);
  });
}

async function pump(
  open: OpenBlob,
  first: BlobBody,
  out: VerifyingStream,
  size: number,
  options: ResumableOptions,
): Promise<void> {
  let received = 0;
  let current: BlobBody | undefined = first;
  let failuresWithoutProgress = 0;
  // Progress resets the failure count, so a flaky link can still finish a large layer; this
  // cap stops a server that sends one byte per connection from looping for ever.
  let resumesLeft = options.policy.attempts * 10;

  while (current) {
    const { body, start } = current;
    current = undefined;
    if (start > received) {
      body.destroy();
      out.destroy(
        new UpstreamError(
          'UPSTREAM_ERROR',
          `${options.label}: asked for bytes from ${received}, the registry sent from ${start}`,
        ),
      );
      return;
    }
    let skip = received - start;
    const before = received;
    try {
      for await (const chunk of body) {
        if (out.destroyed) break;
        let data = chunk as Buffer;
        if (skip > 0) {
          if (data.length <= skip) {
            skip -= data.length;
            continue;
          }
          data = data.subarray(skip);
          skip = 0;
        }
        received += data.length;
        if (!out.write(data)) await drained(out);
      }
      if (out.destroyed) {
        body.destroy();
        return;
      }
      // A clean end. Short or long bodies are the VerifyingStream's to judge.
      out.end();
      return;
    } catch (err) {
      body.destroy();
      if (out.destroyed) return;
      const failure = networkError(err, 'transfer');
      if (!isTransient(failure) || received >= size) {
        out.destroy(failure);
        return;
      }
      failuresWithoutProgress = received > before ? 1 : failuresWithoutProgress + 1;
      resumesLeft--;
      if (failuresWithoutProgress >= options.policy.attempts || resumesLeft <= 0) {
        out.destroy(gaveUp(failure, options.label, received, size));
        return;
      }
      await options.sleep(backoffDelay(options.policy, failuresWithoutProgress));
      if (out.destroyed) return;
      try {
        current = await open(received);
      } catch (reopenError) {
        out.destroy(reopenError as Error);
        return;
      }
      if (out.destroyed) {
        current.body.destroy();
        return;
      }
    }
  }
}

function gaveUp(failure: Error, label: string, received: number, size: number): UpstreamError {
  const code = failure instanceof UpstreamError ? failure.code : 'UPSTREAM_ERROR';
  return new UpstreamError(
    code === 'UPSTREAM_TIMEOUT' ? 'UPSTREAM_TIMEOUT' : 'UPSTREAM_ERROR',
    `${label}: transfer kept failing at byte ${received} of ${size}: ${failure.message}`,
    { retryable: true, cause: failure },
  );
}
