import type { RateLimitInfo } from '../ports/upstream.ts';

type Headers = Record<string, string | string[] | undefined>;

function header(headers: Headers, name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/**
 * Docker Hub sends `RateLimit-Limit: 100;w=21600` and `RateLimit-Remaining: 76;w=21600`
 * (the IETF draft format: a quota and its window in seconds).
 */
export function parseQuota(
  value: string | undefined,
): { quota: number; window?: number } | undefined {
  if (!value) return undefined;
  const [first, ...params] = value.split(';');
  const quota = Number(first?.trim());
  if (first === undefined || first.trim() === '' || !Number.isFinite(quota) || quota < 0) {
    return undefined;
  }
  let window: number | undefined;
  for (const param of params) {
    const [key, raw] = param.split('=').map((part) => part.trim());
    const seconds = Number(raw);
    if (key === 'w' && Number.isFinite(seconds) && seconds > 0) window = seconds;
  }
  return { quota, window };
}

/** The rate-limit headers of one response, or undefined when it carried none. */
export function parseRateLimit(headers: Headers, now: number): RateLimitInfo | undefined {
  const limit = parseQuota(header(headers, 'ratelimit-limit'));
  const remaining = parseQuota(header(headers, 'ratelimit-remaining'));
  const source = header(headers, 'docker-ratelimit-source')?.trim();
  // Delta seconds, as the IETF draft and GitHub-style registries send it.
  const resetSeconds = Number(header(headers, 'ratelimit-reset')?.trim() || Number.NaN);
  const reset = Number.isFinite(resetSeconds) && resetSeconds >= 0 ? resetSeconds : undefined;
  if (!limit && !remaining && !source && reset === undefined) return undefined;
  const info: RateLimitInfo = { observedAt: now };
  if (limit) info.limit = limit.quota;
  if (remaining) info.remaining = remaining.quota;
  const window = limit?.window ?? remaining?.window;
  if (window !== undefined) info.windowSeconds = window;
  if (source) info.source = source;
  if (reset !== undefined) info.resetAt = now + reset * 1000;
  return info;
}

/** `Retry-After` as milliseconds from `now`: delta-seconds or an HTTP date (RFC 9110 10.2.3). */
export function parseRetryAfter(value: string | undefined, now: number): number | undefined {
  if (!value) return undefined;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000;
  const at = Date.parse(trimmed);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, at - now);
}

function humanSeconds(seconds: number): string {
  if (seconds % 3600 === 0) return `${seconds / 3600} h`;
  if (seconds % 60 === 0) return `${seconds / 60} min`;
  return `${seconds} s`;
}

/**
 * The message for a 429 we will not wait out: which limit was hit, for whom, and when to try
 * again, so whoever reads the pull error knows whether to wait or to configure credentials.
 */
export function describeRateLimit(
  registry: string,
  info: RateLimitInfo | undefined,
  waitMs: number | undefined,
  now: number,
  upstreamMessage?: string,
): string {
  const parts = [`${registry} rate limit reached`];
  if (info?.limit !== undefined) {
    const window = info.windowSeconds ? ` per ${humanSeconds(info.windowSeconds)}` : '';
    const who = info.source ? ` for ${info.source}` : '';
    parts.push(`(limit ${info.limit} pulls${window}${who})`);
  }
  if (upstreamMessage) parts.push(`: ${upstreamMessage}`);
  const when =
    waitMs !== undefined
      ? `; it resets in ${Math.ceil(waitMs / 1000)} s (at ${new Date(now + waitMs).toISOString()})`
      : '; try again later';
  return `${parts.join(' ').replace(' :', ':')}${when}, or configure credentials for ${registry}`;
}
