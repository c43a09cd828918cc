import type { Clock } from '../ports/clock.ts';
import { hourOf, type StatsLog } from '../ports/stats-log.ts';
import { COUNTER_NAMES, type CounterName, type CounterTotals } from './names.ts';

/** What the recorder reads: this process's counters, summed over labels (CacheMetrics.totals). */
export type TotalsSource = () => CounterTotals;

type Deltas = Partial<Record<CounterName, number>>;

/** Every counter at zero: where sums start. */
export function zeroTotals(): CounterTotals {
  return Object.fromEntries(COUNTER_NAMES.map((name) => [name, 0])) as CounterTotals;
}

/**
 * Turns this process's lifetime counters into the catalog's hourly history. Each flush samples
 * the totals, books what they grew by since the previous sample to the hour the sample falls in,
 * and writes every hour that has something unwritten. A write that fails leaves its hour's delta
 * booked, to be added to by later samples and written by the next flush, so a failure loses
 * nothing and a success is never written twice. Flushes run one at a time.
 *
 * The baseline starts at zero, not at the first sample: the totals count from the process's
 * start, so whatever happened before the recorder was built is still booked, once.
 */
/** Levels that are cheap to read at every flush (SQLite's live storage figures). */
export type GaugeSource = () => Promise<Record<string, number>>;

export class StatsRecorder {
  readonly #totals: TotalsSource;
  readonly #log: StatsLog;
  readonly #clock: Clock;
  #baseline: Deltas = {};
  /** Per hour start, what was sampled but not yet written. */
  readonly #unwritten = new Map<number, Deltas>();
  #running: Promise<number> = Promise.resolve(0);

  readonly #gauges: GaugeSource | undefined;

  constructor(deps: { totals: TotalsSource; log: StatsLog; clock: Clock; gauges?: GaugeSource }) {
    this.#totals = deps.totals;
    this.#log = deps.log;
    this.#clock = deps.clock;
    this.#gauges = deps.gauges;
  }

  /**
   * Samples and writes; answers how many hours were written (0 when nothing changed: no write
   * at all). Rejects with the first write's error after trying every hour; what failed stays
   * booked for the next flush.
   */
  flush(): Promise<number> {
    const run = this.#running.then(
      () => this.#flushNow(),
      () => this.#flushNow(),
    );
    this.#running = run;
    return run;
  }

  /** Hours sampled but not written yet (for tests and the shutdown log). */
  get unwrittenHours(): number {
    return this.#unwritten.size;
  }

  async #flushNow(): Promise<number> {
    this.#sample();
    let written = 0;
    let failure: unknown;
    // Levels ride along with the current hour's counts: no write of their own.
    const current = hourOf(this.#clock.now());
    const gauges =
      this.#gauges && this.#unwritten.has(current) ? await this.#gauges().catch(() => ({})) : {};
    for (const [hour, deltas] of [...this.#unwritten].sort(([a], [b]) => a - b)) {
      try {
        await this.#log.addHour(hour, deltas, hour === current ? gauges : {});
        this.#unwritten.delete(hour);
        written++;
      } catch (error) {
        failure ??= error;
      }
    }
    if (failure !== undefined) throw failure;
    return written;
  }

  #sample(): void {
    const totals = this.#totals();
    const hour = hourOf(this.#clock.now());
    let booked: Deltas | undefined;
    for (const name of COUNTER_NAMES) {
      const now = totals[name] ?? 0;
      const before = this.#baseline[name] ?? 0;
      // A source that went back (a new metrics registry) counts again from zero.
      const grew = now >= before ? now - before : now;
      this.#baseline[name] = now;
      if (grew === 0) continue;
      booked ??= { ...this.#unwritten.get(hour) };
      booked[name] = (booked[name] ?? 0) + grew;
    }
    if (booked) this.#unwritten.set(hour, booked);
  }
}
