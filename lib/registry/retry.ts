import { setTimeout as delay } from 'node:timers/promises';
import { ImageCacheError, UpstreamError } from '../errors.ts';

/** Bounded exponential backoff. Tests shrink the delays; production keeps them in seconds. */
export interface RetryPolicy {
  /** Total tries including the first one. */
  attempts: number;
  baseDelayMs: number;
  maxDelayMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = { attempts: 5, baseDelayMs: 250, maxDelayMs: 8_000 };

export function retryPolicy(overrides: Partial<RetryPolicy> = {}): RetryPolicy {
  const policy = { ...DEFAULT_RETRY, ...overrides };
  if (!Number.isInteger(policy.attempts) || policy.attempts < 1) {
    throw new RangeError(`retry.attempts must be a positive integer, got ${policy.attempts}`);
  }
  if (policy.baseDelayMs < 0 || policy.maxDelayMs < policy.baseDelayMs) {
    throw new RangeError('retry delays must satisfy 0 <= baseDelayMs <= maxDelayMs');
  }
  return policy;
}

/**
 * Delay before retry number `failures` (1 after the first failure). "Equal jitter": half of the
 * exponential step is fixed so retries never bunch at zero, half is random so many pulls that
 * failed together (a registry blip) do not come back in lockstep.
 */
export function backoffDelay(
  policy: RetryPolicy,
  failures: number,
  random: () => number = Math.random,
): number {
  const step = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** Math.max(0, failures - 1));
  return Math.round(step / 2 + random() * (step / 2));
}

export type Sleep = (ms: number) => Promise<void>;
export const realSleep: Sleep = (ms) => delay(ms);

/**
 * Thrown inside a `withRetries` attempt to ask for another try. `error` is what the caller sees
 * once the attempts are used up; `delayMs` overrides the backoff (Retry-After).
 */
export class RetryableFailure extends Error {
  readonly error: Error;
  readonly delayMs: number | undefined;
  constructor(error: Error, delayMs?: number) {
    super(error.message, { cause: error });
    this.error = error;
    this.delayMs = delayMs;
  }
}

export async function withRetries<T>(
  policy: RetryPolicy,
  run: (attempt: number) => Promise<T>,
  sleep: Sleep = realSleep,
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await run(attempt);
    } catch (err) {
      if (!(err instanceof RetryableFailure)) throw err;
      if (attempt >= policy.attempts) throw err.error;
      await sleep(err.delayMs ?? backoffDelay(policy, attempt));
    }
  }
}

/** Transport faults worth another try: resets, refused connections, timeouts. */
export function isTransient(err: unknown): boolean {
  return err instanceof UpstreamError && err.retryable && err.code !== 'UPSTREAM_RATE_LIMITED';
}

const TIMEOUT_CODES = new Set([
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'ETIMEDOUT',
]);

const NETWORK_CODES = new Set([
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
  'ENOTFOUND',
]);

function errorCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string') return code;
  // undici wraps the socket error; the cause carries the errno code.
  const cause = (err as { cause?: unknown } | null)?.cause;
  return cause && cause !== err ? errorCode(cause) : undefined;
}

/**
 * Translates a transport error (undici or node:net) into the domain error at the boundary.
 * `what` names the request without credentials or query strings. Errors that are already
 * domain errors pass through unchanged.
 */
export function networkError(err: unknown, what: string): Error {
  if (err instanceof ImageCacheError) return err;
  if (err instanceof Error && !('code' in err) && !err.cause) return err;
  const code = errorCode(err) ?? 'unknown';
  if (TIMEOUT_CODES.has(code)) {
    const phase =
      code === 'UND_ERR_CONNECT_TIMEOUT'
        ? 'connecting'
        : code === 'UND_ERR_HEADERS_TIMEOUT'
          ? 'waiting for response headers'
          : code === 'UND_ERR_BODY_TIMEOUT'
            ? 'waiting for response data'
            : 'on the connection';
    return new UpstreamError('UPSTREAM_TIMEOUT', `${what}: timed out ${phase} (${code})`, {
      retryable: true,
      cause: err,
    });
  }
  const retryable = NETWORK_CODES.has(code);
  const detail = code === 'UND_ERR_SOCKET' ? 'connection closed by the registry' : code;
  return new UpstreamError('UPSTREAM_ERROR', `${what}: network error (${detail})`, {
    retryable,
    cause: err,
  });
}
