/**
 * The watch schedule's one pass (issue 15): every due watch is claimed (so overlapping passes,
 * two processes or two scheduled invocations never check it twice), its tag revalidated with a
 * manifest HEAD (which Docker Hub does not count), and, when the tag moved or a platform is
 * not stored, a pull job started where jobs run (in process, or the job queue on AWS). The next
 * client then finds the image stored and the tag just confirmed, and asks the upstream nothing.
 *
 * Background work never competes with CI's own pulls: a 429 or a RateLimit-Remaining down to
 * the share kept for clients pauses the registry's checks until its reset, and each registry
 * has a number of background pulls per hour (background-budget.ts). Pauses and counts live in
 * the WatchStore, so every process and invocation sees them.
 */
import { UpstreamRateLimitedError } from '../errors.ts';
import type { Jobs } from '../jobs/jobs.ts';
import { startPullJob } from '../jobs/pull-job.ts';
import { parsePlatform } from '../manifest.ts';
import type { Reference } from '../model.ts';
import type { Clock } from '../ports/clock.ts';
import type { ImageCatalog } from '../ports/image-catalog.ts';
import type { JobStore } from '../ports/job-store.ts';
import { hourOf } from '../ports/stats-log.ts';
import type { Upstream } from '../ports/upstream.ts';
import type {
  RegistryPause,
  WatchCheckOutcome,
  WatchRecord,
  WatchStore,
} from '../ports/watch-store.ts';
import { repositoryName } from '../reference.ts';
import {
  type BackgroundBudgets,
  budgetFor,
  nextHour,
  pauseUntil,
  reserveReached,
} from './background-budget.ts';
import { nextSlot } from './schedule.ts';
import { storedImages } from './stored-images.ts';
import { keepWatchPins, type PinsByName, pinsByName } from './watch-pins.ts';
import { watchedReference } from './watch-settings.ts';

export interface WatcherDeps {
  watches: WatchStore;
  catalog: ImageCatalog;
  jobStore: JobStore;
  upstream: Upstream;
  clock: Clock;
  jobs: Jobs;
  budgets: BackgroundBudgets;
}

/** What one pass did, for logs and the scheduled function's result. */
export interface WatchPassReport {
  due: number;
  checked: number;
  /** Checks that started pulls. */
  changed: number;
  /** Checks that ended with an error, a pause or a spent budget. */
  failed: number;
  /** Due checks left for the next pass (out of time, or claimed by another pass). */
  skipped: number;
}

/** What the checks of one pass share: the pauses seen or made, and the pins read once. */
interface PassState {
  paused: Map<string, RegistryPause>;
  pins: () => Promise<PinsByName>;
}

/** Checks at once: enough to keep up with a thousand watches, few enough to stay unnoticed. */
const CHECKS_AT_ONCE = 4;
/** A claimed check that never reports (its process died) is due again after this. */
const CLAIM_LEASE_MS = 5 * 60_000;
/** After a change, the next check comes this soon (or at the next slot): it pins what was pulled and retries a failed pull. */
const FOLLOW_UP_MS = 60_000;
/** A pass with a deadline stops starting checks this long before it. */
const DEADLINE_MARGIN_MS = 10_000;

export class Watcher {
  readonly #deps: WatcherDeps;

  constructor(deps: WatcherDeps) {
    this.#deps = deps;
  }

  /** Checks every due watch; `remainingMs` (Lambda) stops starting checks near the deadline. */
  async checkDue(remainingMs?: () => number): Promise<WatchPassReport> {
    const { watches, clock } = this.#deps;
    const now = clock.now();
    const [all, pauses] = await Promise.all([watches.listWatches(), watches.listRegistryPauses()]);
    const paused = new Map(pauses.filter((p) => p.until > now).map((p) => [p.registry, p]));
    const due = all
      .filter((w) => w.nextCheckAt <= now)
      .sort((a, b) => a.nextCheckAt - b.nextCheckAt || a.name.localeCompare(b.name));
    const report: WatchPassReport = {
      due: due.length,
      checked: 0,
      changed: 0,
      failed: 0,
      skipped: 0,
    };
    // Read once for the pass, and only when a pinned watch needs it.
    let pins: Promise<PinsByName> | undefined;
    const pass: PassState = {
      paused,
      pins: () => {
        pins ??= pinsByName(this.#deps.catalog);
        return pins;
      },
    };
    let next = 0;
    const worker = async () => {
      while (next < due.length) {
        const watch = due[next++]!;
        if (remainingMs && remainingMs() < DEADLINE_MARGIN_MS) {
          report.skipped++;
          continue;
        }
        const claimed = await watches.claimWatchCheck(
          watch.name,
          watch.nextCheckAt,
          clock.now() + CLAIM_LEASE_MS,
        );
        if (!claimed) {
          report.skipped++;
          continue;
        }
        // A check that throws (the job queue refusing the pull, the table throttled) is this
        // watch's error: the pass goes on rather than end with checks still running unawaited,
        // and a check whose outcome could not be written is due again when its lease ends.
        const outcome = await this.#check(watch, pass).catch(
          (error: unknown): WatchCheckOutcome => {
            const at = clock.now();
            return {
              checkedAt: at,
              nextCheckAt: nextSlot(watch.name, watch.everyMs, at),
              error: messageOf(error),
            };
          },
        );
        report.checked++;
        if (outcome.change) report.changed++;
        if (outcome.error) report.failed++;
        await watches.recordWatchCheck(watch.name, outcome).catch(() => {
          if (!outcome.error) report.failed++;
        });
      }
    };
    await Promise.all(Array.from({ length: CHECKS_AT_ONCE }, worker));
    return report;
  }

  async #check(watch: WatchRecord, pass: PassState): Promise<WatchCheckOutcome> {
    const { paused } = pass;
    const { catalog, upstream, clock } = this.#deps;
    const now = clock.now();
    const nextCheckAt = nextSlot(watch.name, watch.everyMs, now);
    const pause = paused.get(watch.registry);
    if (pause) return this.#pausedOutcome(watch, pause, now);
    let ref: Reference;
    let digest: WatchCheckOutcome['digest'];
    try {
      ref = watchedReference(watch.name);
      const head = await upstream.headManifest(
        { registry: ref.registry, repository: ref.repository },
        ref.tag!,
        { waitOnRateLimit: false },
      );
      digest = head.digest;
    } catch (error) {
      if (!(error instanceof UpstreamRateLimitedError)) {
        return { checkedAt: now, nextCheckAt, error: messageOf(error) };
      }
      const until = pauseUntil(now, this.#quotaSince(watch.registry, now), error.retryAt);
      return this.#pausedOutcome(
        watch,
        await this.#pause(paused, {
          registry: watch.registry,
          until,
          reason: 'the registry answered 429 Too Many Requests',
        }),
        now,
      );
    }

    const repository = repositoryName(ref);
    const tag = await catalog.getTag(repository, ref.tag!);
    const stored = await storedImages(catalog, tag, digest, watch.platforms);
    const wanted = watch.platforms.length > 0 ? watch.platforms : [''];
    const missing = wanted.filter((p) => !stored.has(p));
    // The answer's RateLimit headers: once the quota left is down to the clients' share, the
    // registry's checks stop until it is back (this one still records what it learned).
    const budget = budgetFor(this.#deps.budgets, watch.registry);
    const quota = this.#quotaSince(watch.registry, now);
    const reserved =
      reserveReached(quota, budget) &&
      (await this.#pause(paused, {
        registry: watch.registry,
        until: pauseUntil(now, quota),
        reason: `RateLimit-Remaining ${quota?.remaining} of ${quota?.limit ?? '?'} is within the ${Math.round(budget.reserve * 100)}% kept for clients`,
      }));
    if (missing.length === 0) {
      // Confirmed: clients within the tag TTL are now answered without asking the upstream.
      await catalog.markTagChecked(repository, ref.tag!, now);
      if (watch.pin) await keepWatchPins(catalog, watch, stored, now, await pass.pins());
      // Complete: the pause shows in the registry's listing, and delays the next check.
      const next = reserved ? this.#pausedOutcome(watch, reserved, now).nextCheckAt : nextCheckAt;
      return { checkedAt: now, nextCheckAt: next, digest };
    }
    if (reserved) return { ...this.#pausedOutcome(watch, reserved, now), digest };
    const last = await this.#lastPulls(watch);
    if (last.running) {
      return { checkedAt: now, nextCheckAt: Math.min(nextCheckAt, now + FOLLOW_UP_MS), digest };
    }
    const granted: string[] = [];
    for (const platform of missing) {
      const taken = await this.#deps.watches.takeBackgroundPull(
        watch.registry,
        hourOf(now),
        budget.pullsPerHour,
      );
      if (!taken) break;
      granted.push(platform);
    }
    if (granted.length === 0) {
      const at = nextHour(now);
      return {
        checkedAt: now,
        nextCheckAt: nextSlot(watch.name, watch.everyMs, at - 1),
        digest,
        error: `the background budget of ${budget.pullsPerHour} pulls an hour from ${watch.registry} is spent until ${new Date(at).toISOString()}`,
      };
    }
    // A tag confirmed less than the TTL ago would be served as stored by the pull; the
    // upstream just said otherwise, so the pull must ask again.
    if (tag && tag.source !== digest) await catalog.markTagChecked(repository, ref.tag!, 0);
    const jobs = await Promise.all(
      granted.map((platform) =>
        startPullJob(
          this.#deps,
          this.#deps.jobs,
          ref,
          platform ? parsePlatform(platform) : undefined,
        ),
      ),
    );
    // Still an error to show: why the last pull did not store the image, or platforms left
    // waiting for the budget.
    const problems = [
      last.failed && `the last pull failed (${last.failed}), so it was started again`,
      granted.length < missing.length &&
        `the background budget of ${budget.pullsPerHour} pulls an hour from ${watch.registry} is spent: ${missing.length - granted.length} platforms wait`,
    ].filter((problem): problem is string => typeof problem === 'string');
    return {
      checkedAt: now,
      nextCheckAt: Math.min(nextCheckAt, now + Math.min(watch.everyMs, FOLLOW_UP_MS)),
      digest,
      change: { at: now, jobs: jobs.map((job) => job.id) },
      ...(problems.length > 0 && { error: problems.join('; ') }),
    };
  }

  /** The registry's RateLimit headers if this check's answer carried them (not older ones). */
  #quotaSince(registry: string, since: number) {
    const quota = this.#deps.upstream.rateLimit(registry);
    return quota && quota.observedAt >= since ? quota : undefined;
  }

  async #pause(paused: Map<string, RegistryPause>, pause: RegistryPause): Promise<RegistryPause> {
    paused.set(pause.registry, pause);
    await this.#deps.watches.pauseRegistry(pause);
    return pause;
  }

  #pausedOutcome(watch: WatchRecord, pause: RegistryPause, now: number): WatchCheckOutcome {
    return {
      checkedAt: now,
      // The first slot at or after the reset: the paused checks stay spread out afterwards.
      nextCheckAt: nextSlot(watch.name, watch.everyMs, pause.until - 1),
      error: `checks of ${pause.registry} are paused until ${new Date(pause.until).toISOString()}: ${pause.reason}`,
    };
  }

  /** Whether a pull the last change started is still queued or running, or why one failed. */
  async #lastPulls(watch: WatchRecord): Promise<{ running: boolean; failed?: string }> {
    let failed: string | undefined;
    for (const id of watch.lastJobs ?? []) {
      const job = await this.#deps.jobStore.getJob(id);
      if (job && (job.status === 'queued' || job.status === 'running')) return { running: true };
      if (job?.status === 'failed') failed ??= job.error?.message ?? 'no reason recorded';
    }
    return failed === undefined ? { running: false } : { running: false, failed };
  }
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
