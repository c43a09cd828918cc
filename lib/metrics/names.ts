/**
 * The figures the cache counts (issue 14), named once: `/metrics` exposes them in the
 * Prometheus format (with labels), the hourly history keeps their per-hour sums and last
 * values in the catalog, `/cache/stats` and the dashboard read them under these names.
 *
 * Counters only grow; the history stores per hour what they grew by. Gauges are levels; the
 * history stores the last value seen in the hour.
 */

export const COUNTER_NAMES = [
  /** Requests answered, every door. */
  'requests',
  /** Of those, answered with a 5xx. */
  'requestErrors',
  /** Manifests answered from the catalog, without asking the upstream for the bytes. */
  'manifestHits',
  /** Manifests that had to be fetched from the upstream. */
  'manifestMisses',
  /** Blobs answered from storage. */
  'blobHits',
  /** Blobs that had to be fetched from the upstream. */
  'blobMisses',
  /** Bytes of blobs (and save tarballs) served from the cache, every door. */
  'bytesServed',
  /** Bytes fetched from upstream registries. */
  'bytesFetched',
  /** Requests sent to upstream registries (token requests included). */
  'upstreamRequests',
  /** Of those, failed (network error or 5xx). */
  'upstreamErrors',
  /** Of those, answered 429. */
  'upstreamThrottled',
  /** Manifest GETs sent to Docker Hub: what its pull rate limit counts. */
  'hubManifestGets',
  /** Requests that joined work already under way (single flight) instead of repeating it. */
  'joins',
  /** Pulls finished (Engine API pulls and the registry door's fills). */
  'pulls',
  /** Saves finished. */
  'saves',
  /** Loads finished. */
  'loads',
  /** Garbage collections run (scheduled and after removals). */
  'gcRuns',
  /** Bytes those collections deleted. */
  'bytesReclaimed',
] as const;

export const GAUGE_NAMES = [
  /** Bytes of blobs stored. */
  'storedBytes',
  /** Blobs stored. */
  'storedBlobs',
  /** Images (image manifests) in the catalog. */
  'images',
  /** The retention budget in bytes; absent when none is set. */
  'budgetBytes',
] as const;

export type CounterName = (typeof COUNTER_NAMES)[number];
export type GaugeName = (typeof GAUGE_NAMES)[number];
export type CounterTotals = Record<CounterName, number>;
export type GaugeValues = Partial<Record<GaugeName, number>>;

/**
 * Where the upstream pulls a cache saved come from: every manifest answered from the catalog is
 * a pull the upstream did not see (Docker Hub counts manifest GETs, not blobs).
 */
export function pullsSaved(counters: Partial<CounterTotals>): number {
  return counters.manifestHits ?? 0;
}

/** Hits over lookups, manifests and blobs together; undefined before the first lookup. */
export function hitRatio(counters: Partial<CounterTotals>): number | undefined {
  const hits = (counters.manifestHits ?? 0) + (counters.blobHits ?? 0);
  const lookups = hits + (counters.manifestMisses ?? 0) + (counters.blobMisses ?? 0);
  return lookups === 0 ? undefined : hits / lookups;
}

/** What the cache last heard from an upstream about its rate limit (Docker Hub's headers). */
export interface UpstreamHeadroom {
  registry: string;
  /** `RateLimit-Remaining` of the last answer that carried it. */
  rateLimitRemaining?: number;
  /** `RateLimit-Limit` of that answer. */
  rateLimitLimit?: number;
  /** When that answer came (ms since epoch). */
  observedAt?: number;
}
