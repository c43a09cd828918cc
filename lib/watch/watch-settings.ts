/**
 * What `PUT /cache/watch/{name}?every=&platform=&pin=` asks for, checked whole before anything
 * is stored: a tag reference on an allowed registry (a digest never moves), an interval within
 * the limits, platforms as `docker --platform` takes them.
 */
import { parseDuration } from '../duration.ts';
import { InvalidArgumentError } from '../errors.ts';
import { formatPlatform, parsePlatform } from '../manifest.ts';
import type { Reference } from '../model.ts';
import type { WatchSettings } from '../ports/watch-store.ts';
import { formatReference, parseReference, withDefaultTag } from '../reference.ts';

export interface WatchLimits {
  /** The shortest interval a watch may ask for (IMAGE_CACHE_WATCH_MIN_EVERY). */
  minEveryMs: number;
}

export const DEFAULT_WATCH_EVERY = '1h';
/** Longer than a week is a pin with extra steps; the TTL revalidation covers it. */
export const MAX_EVERY_MS = 7 * 86_400_000;
const MAX_PLATFORMS = 8;

/** The watched reference: `nginx` is `docker.io/library/nginx:latest`; digests are refused. */
export function watchedReference(name: string): Reference {
  const ref = withDefaultTag(parseReference(name));
  if (ref.digest) {
    throw new InvalidArgumentError(
      `${name} names a digest, which never moves: watch a tag such as nginx:1.27`,
    );
  }
  return ref;
}

export function parseWatchSettings(
  name: string,
  query: URLSearchParams,
  registries: ReadonlyMap<string, URL>,
  limits: WatchLimits,
): WatchSettings {
  const ref = watchedReference(name);
  if (!registries.has(ref.registry)) {
    throw new InvalidArgumentError(
      `registry ${ref.registry} is not allowed: add it to IMAGE_CACHE_REGISTRIES to watch its images`,
    );
  }
  const everyMs = parseDuration(query.get('every') ?? DEFAULT_WATCH_EVERY);
  if (everyMs < limits.minEveryMs || everyMs > MAX_EVERY_MS) {
    throw new InvalidArgumentError(
      `every must be between ${limits.minEveryMs / 1000}s and 7d (IMAGE_CACHE_WATCH_MIN_EVERY sets the shortest)`,
    );
  }
  const platforms = [
    ...new Set(query.getAll('platform').map((p) => formatPlatform(parsePlatform(p)))),
  ];
  if (platforms.length > MAX_PLATFORMS) {
    throw new InvalidArgumentError(`a watch names at most ${MAX_PLATFORMS} platforms`);
  }
  return {
    name: formatReference(ref),
    registry: ref.registry,
    everyMs,
    platforms: platforms.sort(),
    pin: parseFlag(query.get('pin'), 'pin'),
  };
}

function parseFlag(value: string | null, name: string): boolean {
  if (value === null || value === '' || value === '0' || value === 'false') return false;
  if (value === '1' || value === 'true') return true;
  throw new InvalidArgumentError(`${name} must be 1 or 0`);
}
