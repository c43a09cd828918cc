import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { GcReport } from '../ports/gc-report-log.ts';
import {
  COUNTER_NAMES,
  type CounterName,
  type CounterTotals,
  type GaugeValues,
  type UpstreamHeadroom,
} from './names.ts';

/** The two front doors a lookup comes through: the Docker Engine API or the registry API. */
export type Door = 'engine' | 'registry';

/** How an upstream exchange ended, as the counters tell them apart. */
export type UpstreamOutcome = 'ok' | 'error' | 'throttled';

export type DurationKind = 'pull' | 'save' | 'load';

/** Job states as /metrics reports them: running in this process, or how they ended. */
export type JobGaugeState = 'running' | 'succeeded' | 'failed';

/**
 * The stored figures (bytes, blobs, images, budget), read when /metrics is scraped. The
 * composition sets it; it must be cheap (no Scan on DynamoDB): a kept summary, not a listing.
 */
export type StorageSource = () => Promise<GaugeValues>;

/** What a collaborator in lib/registry needs: upstream requests and rate-limit headers. */
export interface UpstreamObserver {
  upstreamRequest(registry: string, outcome: UpstreamOutcome, hubManifestGet: boolean): void;
  rateLimitSeen(registry: string, remaining: number | undefined, limit: number | undefined): void;
}

/** What the collector reports to. */
export interface GcObserver {
  collected(report: GcReport): void;
}

/**
 * The Prometheus series behind each COUNTER_NAMES entry: the one place that maps names the
 * history and dashboard use onto /metrics. A series with a `filter` counts only those samples.
 */
export const SERIES: Record<CounterName, { metric: string; filter?: Record<string, string> }> = {
  requests: { metric: 'image_cache_requests_total' },
  requestErrors: { metric: 'image_cache_requests_total', filter: { class: '5xx' } },
  manifestHits: {
    metric: 'image_cache_lookups_total',
    filter: { kind: 'manifest', result: 'hit' },
  },
  manifestMisses: {
    metric: 'image_cache_lookups_total',
    filter: { kind: 'manifest', result: 'miss' },
  },
  blobHits: { metric: 'image_cache_lookups_total', filter: { kind: 'blob', result: 'hit' } },
  blobMisses: { metric: 'image_cache_lookups_total', filter: { kind: 'blob', result: 'miss' } },
  bytesServed: { metric: 'image_cache_served_bytes_total' },
  bytesFetched: { metric: 'image_cache_upstream_fetched_bytes_total' },
  upstreamRequests: { metric: 'image_cache_upstream_requests_total' },
  upstreamErrors: { metric: 'image_cache_upstream_requests_total', filter: { outcome: 'error' } },
  upstreamThrottled: {
    metric: 'image_cache_upstream_requests_total',
    filter: { outcome: 'throttled' },
  },
  hubManifestGets: { metric: 'image_cache_dockerhub_manifest_gets_total' },
  joins: { metric: 'image_cache_single_flight_joins_total' },
  pulls: { metric: 'image_cache_operation_duration_seconds_count', filter: { operation: 'pull' } },
  saves: { metric: 'image_cache_operation_duration_seconds_count', filter: { operation: 'save' } },
  loads: { metric: 'image_cache_operation_duration_seconds_count', filter: { operation: 'load' } },
  gcRuns: { metric: 'image_cache_gc_runs_total' },
  bytesReclaimed: { metric: 'image_cache_gc_reclaimed_bytes_total' },
};

/** SERIES turned around: for each Prometheus series, the names it adds to (and when). */
const NAMES_OF: ReadonlyMap<string, { name: CounterName; filter: Record<string, string> }[]> =
  new Map(
    [...new Set(COUNTER_NAMES.map((name) => SERIES[name].metric))].map((metric) => [
      metric,
      COUNTER_NAMES.filter((name) => SERIES[name].metric === metric).map((name) => ({
        name,
        filter: SERIES[name].filter ?? {},
      })),
    ]),
  );

const DURATION_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900];

/**
 * The figures of one process (issue 14), over a prom-client Registry of its own: two
 * compositions in one process (tests) never share counts, and nothing lands in prom-client's
 * global registry. Call sites use the small typed methods; /metrics renders `prometheusText()`;
 * the history and the Lambda EMF line read `totals()`.
 */
export class CacheMetrics implements UpstreamObserver, GcObserver {
  readonly registry = new Registry();
  readonly #requests: Counter<'family' | 'status' | 'class'>;
  readonly #lookups: Counter<'kind' | 'result' | 'registry' | 'door'>;
  readonly #served: Counter<'door'>;
  readonly #fetched: Counter<'registry'>;
  readonly #upstream: Counter<'registry' | 'outcome'>;
  readonly #hubManifestGets: Counter;
  readonly #joins: Counter<'work'>;
  readonly #durations: Histogram<'operation'>;
  readonly #gcRuns: Counter<'trigger'>;
  readonly #reclaimed: Counter<'trigger'>;
  readonly #headroom = new Map<string, UpstreamHeadroom>();
  /** The series name of each counter, for #tally (prom-client does not type it). */
  readonly #seriesOf = new Map<Counter<string>, string>();
  /** Kept beside the series (through SERIES), so totals() is a plain read. */
  readonly #totals = Object.fromEntries(COUNTER_NAMES.map((name) => [name, 0])) as CounterTotals;
  readonly #jobs: Record<JobGaugeState, number> = { running: 0, succeeded: 0, failed: 0 };
  readonly #now: () => number;
  #storage: StorageSource | undefined;

  constructor(options: { now?: () => number; storage?: StorageSource } = {}) {
    this.#now = options.now ?? Date.now;
    this.#storage = options.storage;
    const registers = [this.registry];
    const counter = <L extends string>(name: string, help: string, labelNames: L[] = []) => {
      const created = new Counter<L>({ name, help, labelNames, registers });
      this.#seriesOf.set(created as Counter<string>, name);
      return created;
    };
    this.#requests = counter(
      'image_cache_requests_total',
      'HTTP requests answered, by route family and status',
      ['family', 'status', 'class'],
    );
    this.#lookups = counter(
      'image_cache_lookups_total',
      'Manifest and blob lookups by clients: hit (from the cache) or miss (from the upstream)',
      ['kind', 'result', 'registry', 'door'],
    );
    this.#served = counter(
      'image_cache_served_bytes_total',
      'Bytes of blobs and save tarballs served from the cache',
      ['door'],
    );
    this.#fetched = counter(
      'image_cache_upstream_fetched_bytes_total',
      'Bytes of blobs fetched from upstream registries and stored',
      ['registry'],
    );
    this.#upstream = counter(
      'image_cache_upstream_requests_total',
      'Requests sent to upstream registries (token requests included), by outcome',
      ['registry', 'outcome'],
    );
    this.#hubManifestGets = counter(
      'image_cache_dockerhub_manifest_gets_total',
      'Manifest GETs sent to Docker Hub: what its pull rate limit counts',
    );
    this.#joins = counter(
      'image_cache_single_flight_joins_total',
      'Requests that joined a fetch already under way instead of repeating it',
      ['work'],
    );
    this.#durations = new Histogram({
      name: 'image_cache_operation_duration_seconds',
      help: 'How long pulls, saves and loads took, to the last byte',
      labelNames: ['operation'],
      buckets: DURATION_BUCKETS,
      registers,
    });
    this.#gcRuns = counter(
      'image_cache_gc_runs_total',
      'Garbage collections run (dry runs excluded)',
      ['trigger'],
    );
    this.#reclaimed = counter(
      'image_cache_gc_reclaimed_bytes_total',
      'Bytes garbage collections deleted',
      ['trigger'],
    );
    this.#gauges(registers);
  }

  /** Where the stored figures come from; the composition sets it once its source exists. */
  setStorageSource(source: StorageSource): void {
    this.#storage = source;
  }

  request(family: string, status: number): void {
    const labels = { family, status: String(status), class: `${Math.floor(status / 100)}xx` };
    this.#inc(this.#requests, labels);
  }

  lookup(kind: 'manifest' | 'blob', hit: boolean, registry: string, door: Door, count = 1): void {
    if (count <= 0) return;
    this.#inc(this.#lookups, { kind, result: hit ? 'hit' : 'miss', registry, door }, count);
  }

  bytesServed(door: Door, bytes: number): void {
    if (bytes > 0) this.#inc(this.#served, { door }, bytes);
  }

  bytesFetched(registry: string, bytes: number): void {
    if (bytes > 0) this.#inc(this.#fetched, { registry }, bytes);
  }

  upstreamRequest(registry: string, outcome: UpstreamOutcome, hubManifestGet: boolean): void {
    this.#inc(this.#upstream, { registry, outcome });
    if (hubManifestGet) this.#inc(this.#hubManifestGets, {});
  }

  rateLimitSeen(registry: string, remaining: number | undefined, limit: number | undefined): void {
    if (remaining === undefined && limit === undefined) return;
    this.#headroom.set(registry, {
      registry,
      ...(remaining !== undefined && { rateLimitRemaining: remaining }),
      ...(limit !== undefined && { rateLimitLimit: limit }),
      observedAt: this.#now(),
    });
  }

  /** A request that shared a fetch under way (a blob download, a manifest GET). */
  joined(work: 'blob' | 'manifest'): void {
    this.#inc(this.#joins, { work });
  }

  duration(operation: DurationKind, seconds: number): void {
    this.#durations.observe({ operation }, seconds);
    this.#tally('image_cache_operation_duration_seconds_count', { operation }, 1);
  }

  collected(report: GcReport): void {
    if (report.dryRun) return;
    this.#inc(this.#gcRuns, { trigger: report.trigger });
    if (report.deleted.bytes > 0) {
      this.#inc(this.#reclaimed, { trigger: report.trigger }, report.deleted.bytes);
    }
  }

  jobStarted(): void {
    this.#jobs.running++;
  }

  jobEnded(state: 'succeeded' | 'failed'): void {
    this.#jobs.running = Math.max(0, this.#jobs.running - 1);
    this.#jobs[state]++;
  }

  /** Jobs this process runs now, and those it ran by how they ended. */
  jobCounts(): Readonly<Record<JobGaugeState, number>> {
    return { ...this.#jobs };
  }

  /** What each upstream last said about its rate limit, for /cache/stats and the dashboard. */
  upstreamHeadroom(): UpstreamHeadroom[] {
    return [...this.#headroom.values()].map((entry) => ({ ...entry }));
  }

  /** Process-lifetime sums of every counter, all labels summed. */
  totals(): CounterTotals {
    return { ...this.#totals };
  }

  #inc<L extends string>(counter: Counter<L>, labels: Partial<Record<L, string>>, by = 1): void {
    counter.inc(labels, by);
    this.#tally(this.#seriesOf.get(counter as Counter<string>) ?? '', labels, by);
  }

  /** Adds a sample of `metric` to the totals it belongs to, by the one table (SERIES). */
  #tally(metric: string, labels: Record<string, string | undefined>, by: number): void {
    for (const { name, filter } of NAMES_OF.get(metric) ?? []) {
      if (Object.entries(filter).every(([key, value]) => labels[key] === value)) {
        this.#totals[name] += by;
      }
    }
  }

  /** The exposition format, v0.0.4. */
  prometheusText(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** Gauges are read at scrape time, from counts this process keeps and the storage source. */
  #gauges(registers: Registry[]): void {
    const jobs = this.#jobs;
    new Gauge({
      name: 'image_cache_jobs',
      help: 'Background jobs this process ran: running now, and ended by outcome',
      labelNames: ['state'],
      registers,
      collect() {
        for (const [state, count] of Object.entries(jobs)) this.set({ state }, count);
      },
    });
    const headroom = this.#headroom;
    new Gauge({
      name: 'image_cache_upstream_ratelimit_remaining',
      help: 'RateLimit-Remaining of the last upstream answer that carried it',
      labelNames: ['registry'],
      registers,
      collect() {
        for (const entry of headroom.values()) {
          if (entry.rateLimitRemaining !== undefined) {
            this.set({ registry: entry.registry }, entry.rateLimitRemaining);
          }
        }
      },
    });
    new Gauge({
      name: 'image_cache_upstream_ratelimit_limit',
      help: 'RateLimit-Limit of the last upstream answer that carried it',
      labelNames: ['registry'],
      registers,
      collect() {
        for (const entry of headroom.values()) {
          if (entry.rateLimitLimit !== undefined) {
            this.set({ registry: entry.registry }, entry.rateLimitLimit);
          }
        }
      },
    });
    const storage = () => this.#storage;
    const stored = (name: string, help: string, key: keyof GaugeValues) =>
      new Gauge({
        name,
        help,
        registers,
        async collect() {
          const value = (await storage()?.())?.[key];
          if (value !== undefined) this.set(value);
        },
      });
    stored('image_cache_stored_bytes', 'Bytes of blobs stored', 'storedBytes');
    stored('image_cache_stored_blobs', 'Blobs stored', 'storedBlobs');
    stored('image_cache_images', 'Image manifests in the catalog', 'images');
    stored('image_cache_retention_budget_bytes', 'The retention budget in bytes', 'budgetBytes');
  }
}
