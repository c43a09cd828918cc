/**
 * Conditional skips that say why. `describe(name, skipWhen(dockerdSkipReason()), fn)` or
 * `it(name, skipWhen(!isRoot, 'needs root'), fn)` skips with the reason recorded in the test's
 * meta, where the skip guard (test/support/skip-guard.ts) reads it: a run fails when a test is
 * skipped for a reason test/allowed-skips.ts does not list.
 */
import type { TestOptions } from 'vitest';

declare module 'vitest' {
  interface TaskMeta {
    /** Why the test is skipped, set by skipWhen. */
    skipReason?: string;
  }
}

/** Skip when a reason is given (the shape of dockerdSkipReason() and its kin). */
export function skipWhen(reason: string | undefined): TestOptions;
/** Skip with `reason` when `condition` holds. */
export function skipWhen(condition: boolean, reason: string): TestOptions;
export function skipWhen(first: string | boolean | undefined, second?: string): TestOptions {
  const reason = typeof first === 'boolean' ? (first ? second : undefined) : first;
  return reason === undefined ? {} : { skip: true, meta: { skipReason: reason } };
}
