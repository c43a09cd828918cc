import type { Digest } from '../digest.ts';

/**
 * Watched references (issue 15): tags the cache revalidates on a schedule and pulls in the
 * background when they move upstream, plus what the scheduler must share between processes
 * (a serve and a CLI on one file, overlapping scheduled Lambda invocations): which checks are
 * claimed, which registries are paused for their rate limit, and each registry's background
 * pulls per hour.
 */

/** What a user sets with `PUT /cache/watch/{name}`. */
export interface WatchSettings {
  /** The full reference with its tag, as pins name one: `docker.io/library/nginx:1.27`. */
  name: string;
  /** The registry host of `name` (`docker.io`), for pauses and budgets. */
  registry: string;
  /** How often the tag is revalidated. */
  everyMs: number;
  /** Normalised platforms (`linux/arm64/v8`), sorted; empty means the default platform. */
  platforms: string[];
  /** Whether the watch keeps a pin (named `name`) on the image the tag points to. */
  pin: boolean;
}

/** A watch with its schedule and the outcome of its last check. */
export interface WatchRecord extends WatchSettings {
  createdAt: number;
  /** When the next check is due (ms since the epoch); a claimed check moves it on. */
  nextCheckAt: number;
  /** When the last check finished, whatever its outcome. */
  lastCheckAt?: number;
  /** What the upstream named for the tag (index or manifest) at the last check that got an answer. */
  lastDigest?: Digest;
  /** When a check last found the tag moved (or not yet stored) and started its pull. */
  lastChangeAt?: number;
  /** Why the last check did not complete (an upstream error, a pause, a spent budget); absent when it did. */
  lastError?: string;
  /** The pull jobs the last change started. */
  lastJobs?: string[];
}

/** What one check wrote: its time, the next due time and whatever it learned. */
export interface WatchCheckOutcome {
  checkedAt: number;
  nextCheckAt: number;
  /** Absent: the check got no answer (lastDigest stays). */
  digest?: Digest;
  /** Set when the check started pulls (lastChangeAt and lastJobs are replaced). */
  change?: { at: number; jobs: string[] };
  /** Absent: the check completed, and an earlier error is cleared. */
  error?: string;
}

/** A registry whose background work stops until `until` (a 429, or RateLimit-Remaining too low). */
export interface RegistryPause {
  registry: string;
  until: number;
  reason: string;
}

export interface WatchStore {
  /**
   * Creates the watch, or changes the settings of an existing one while keeping its check
   * history. `nextCheckAt` is written only on creation or when `everyMs` changed (the schedule
   * is then recomputed by the caller); otherwise the existing due time stays.
   */
  putWatch(
    settings: WatchSettings,
    now: number,
    nextCheckAt: number,
  ): Promise<{ record: WatchRecord; created: boolean }>;
  getWatch(name: string): Promise<WatchRecord | undefined>;
  /** Removes a watch; answers the removed record, or undefined when there was none. */
  deleteWatch(name: string): Promise<WatchRecord | undefined>;
  /** Every watch, by name. Bounded by MAX_WATCHES, so a listing is one read. */
  listWatches(): Promise<WatchRecord[]>;
  /**
   * Claims a due check for one scheduler: moves nextCheckAt from `due` to `leaseUntil` only if
   * it is still `due` (and the watch exists). A second scheduler that read the same record
   * loses; a claimer that dies leaves the check due again at `leaseUntil`.
   */
  claimWatchCheck(name: string, due: number, leaseUntil: number): Promise<boolean>;
  /** Writes a check's outcome; nothing happens when the watch was deleted meanwhile. */
  recordWatchCheck(name: string, outcome: WatchCheckOutcome): Promise<void>;

  /** Pauses background work on a registry; an existing later `until` is kept. */
  pauseRegistry(pause: RegistryPause): Promise<void>;
  /** The pauses recorded, expired ones included (callers compare `until` with now). */
  listRegistryPauses(): Promise<RegistryPause[]>;
  /**
   * Counts one background pull against `registry`'s budget for the hour starting at
   * `hourStart`, but only while fewer than `limit` were counted for that hour; answers whether
   * it was counted. Atomic across processes.
   */
  takeBackgroundPull(registry: string, hourStart: number, limit: number): Promise<boolean>;
  /** Background pulls counted for the hour (0 when none), for the watch listing. */
  backgroundPulls(registry: string, hourStart: number): Promise<number>;
}

/** How many watches one cache keeps: a listing and a scheduler pass stay one bounded read. */
export const MAX_WATCHES = 1000;

/**
 * How long a registry's hourly background-pull counts are kept: a budget is only ever asked of
 * the current hour, and the watch listing shows that one; a day covers clocks that disagree.
 */
export const BACKGROUND_PULL_HOURS_KEPT_MS = 24 * 3_600_000;
