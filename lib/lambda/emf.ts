/**
 * The Lambda side of /metrics: a function has no scraper, so each invocation writes what it
 * counted as one CloudWatch Embedded Metric Format line on stdout, through Powertools Metrics.
 * CloudWatch Logs turns the line into metrics (namespace `ImageCache`, dimension
 * `service=image-cache`) with no API call from the function, so nothing is added to its
 * latency or its IAM policy.
 */
import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import type { CacheMetrics } from '../metrics/cache-metrics.ts';
import { COUNTER_NAMES, type CounterName, type CounterTotals } from '../metrics/names.ts';

export const EMF_NAMESPACE = 'ImageCache';
export const EMF_SERVICE = 'image-cache';
/** Beside COUNTER_NAMES: the jobs that ended in the invocation, by outcome (the dashboard's). */
export const EMF_JOB_METRICS = { succeeded: 'jobsSucceeded', failed: 'jobsFailed' } as const;

const BYTE_COUNTERS: ReadonlySet<CounterName> = new Set([
  'bytesServed',
  'bytesFetched',
  'bytesReclaimed',
]);

/** One per container, beside the composition whose CacheMetrics it reads. */
export class InvocationMetrics {
  readonly #metrics: CacheMetrics;
  readonly #emf = new Metrics({ namespace: EMF_NAMESPACE, serviceName: EMF_SERVICE });
  /** What the last line covered: each line carries the growth since, so none counts twice. */
  #published: CounterTotals | undefined;
  #jobsPublished = { succeeded: 0, failed: 0 };

  constructor(metrics: CacheMetrics) {
    this.#metrics = metrics;
  }

  /**
   * Writes what the process counted since the last line, at the end of an invocation. Work an
   * invocation left running (a registry fill, a download nobody waits for) lands in the next
   * line, and the first line of a container includes what its start counted.
   */
  async publish(): Promise<void> {
    const now = this.#metrics.totals();
    const before = this.#published;
    this.#published = now;
    const jobs = this.#metrics.jobCounts();
    for (const state of ['succeeded', 'failed'] as const) {
      this.#emf.addMetric(
        EMF_JOB_METRICS[state],
        MetricUnit.Count,
        jobs[state] - this.#jobsPublished[state],
      );
    }
    this.#jobsPublished = { succeeded: jobs.succeeded, failed: jobs.failed };
    this.#write(before, now);
  }

  #write(before: CounterTotals | undefined, after: CounterTotals): void {
    // Zeros too: a dashboard line that reads 0 rather than missing data says "no traffic".
    for (const name of COUNTER_NAMES) {
      const unit = BYTE_COUNTERS.has(name) ? MetricUnit.Bytes : MetricUnit.Count;
      this.#emf.addMetric(name, unit, Math.max(0, after[name] - (before?.[name] ?? 0)));
    }
    for (const headroom of this.#metrics.upstreamHeadroom()) {
      if (headroom.rateLimitRemaining === undefined) continue;
      // Metadata rather than a dimension: one registry name per line would split the metrics.
      this.#emf.addMetadata(
        `rateLimitRemaining.${headroom.registry}`,
        String(headroom.rateLimitRemaining),
      );
    }
    this.#emf.publishStoredMetrics();
  }
}
