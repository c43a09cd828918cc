/**
 * What background work (watched tags' checks and pulls) may spend of an upstream, so it never
 * starves the pulls CI is waiting for. Per registry: a number of background pulls per clock
 * hour, and a share of the upstream's own quota kept for clients: once RateLimit-Remaining is
 * down to that share of RateLimit-Limit, background work pauses until the quota is back.
 */
import { HOUR_MS } from '../ports/stats-log.ts';
import type { RateLimitInfo } from '../ports/upstream.ts';

export interface RegistryBudget {
  /** Pulls that background work may start per clock hour. */
  pullsPerHour: number;
  /** Share (0..1) of RateLimit-Limit kept for clients. */
  reserve: number;
}

export interface BackgroundBudgets {
  byRegistry: ReadonlyMap<string, RegistryBudget>;
  /** For registries not named. */
  fallback: RegistryBudget;
}

/**
 * Docker Hub's anonymous quota is 10 pulls an hour per address, its free accounts' a hundred:
 * half of it stays with clients. Other registries rarely publish a quota, so the pulls per
 * hour are what bounds them.
 */
export const DEFAULT_BACKGROUND_BUDGETS: BackgroundBudgets = {
  byRegistry: new Map([['docker.io', { pullsPerHour: 10, reserve: 0.5 }]]),
  fallback: { pullsPerHour: 30, reserve: 0.25 },
};

/** How long a pause lasts when the registry said nothing about its reset. */
export const DEFAULT_PAUSE_MS = 15 * 60_000;

export function budgetFor(budgets: BackgroundBudgets, registry: string): RegistryBudget {
  return budgets.byRegistry.get(registry) ?? budgets.fallback;
}

/** Whether the last RateLimit headers say the quota left is down to what clients keep. */
export function reserveReached(info: RateLimitInfo | undefined, budget: RegistryBudget): boolean {
  if (info?.remaining === undefined) return false;
  if (info.remaining === 0) return true;
  if (info.limit === undefined) return false;
  return info.remaining <= Math.floor(info.limit * budget.reserve);
}

/**
 * Until when a registry's background work waits: the time a 429 named (Retry-After), else the
 * reset the registry announced, else the end of the quota's window counted from when it was
 * seen (a whole window brings a rolling quota back too), else DEFAULT_PAUSE_MS.
 */
export function pauseUntil(now: number, info: RateLimitInfo | undefined, retryAt?: number): number {
  const candidates = [
    retryAt,
    info?.resetAt,
    info?.windowSeconds !== undefined ? info.observedAt + info.windowSeconds * 1000 : undefined,
  ];
  const until = candidates.find((at) => at !== undefined && at > now);
  return until ?? now + DEFAULT_PAUSE_MS;
}

/** The start of the clock hour after `time`: when a spent hourly budget is whole again. */
export function nextHour(time: number): number {
  return (Math.floor(time / HOUR_MS) + 1) * HOUR_MS;
}

/** `docker.io=10/h:50%,*=30/h:25%`: the IMAGE_CACHE_BACKGROUND_BUDGET syntax. */
export function parseBackgroundBudgets(
  text: string,
  fail: (message: string) => Error,
): BackgroundBudgets {
  const byRegistry = new Map<string, RegistryBudget>();
  let fallback = DEFAULT_BACKGROUND_BUDGETS.fallback;
  for (const [name, budget] of DEFAULT_BACKGROUND_BUDGETS.byRegistry) byRegistry.set(name, budget);
  for (const raw of text.split(',')) {
    const entry = raw.trim();
    if (entry === '') continue;
    const match = /^([^=\s]+)=(\d+)\/h(?::(\d+(?:\.\d+)?)%)?$/.exec(entry);
    if (!match) {
      throw fail(
        `entry ${JSON.stringify(entry)} must be registry=<pulls>/h[:<reserve>%], e.g. docker.io=10/h:50%`,
      );
    }
    const [, registry = '', pulls = '', reserve] = match;
    const percent = reserve === undefined ? undefined : Number(reserve);
    if (percent !== undefined && percent > 100) {
      throw fail(
        `entry ${JSON.stringify(entry)}: the reserve is a share of the quota, at most 100%`,
      );
    }
    const base = registry === '*' ? fallback : (byRegistry.get(registry) ?? fallback);
    const budget = {
      pullsPerHour: Number(pulls),
      reserve: percent === undefined ? base.reserve : percent / 100,
    };
    if (registry === '*') fallback = budget;
    else byRegistry.set(registry.toLowerCase(), budget);
  }
  return { byRegistry, fallback };
}
