/**
 * When watches are checked. Each watch has a fixed phase inside its interval, derived from its
 * name: a thousand tags watched every hour are checked about one every 3.6 s rather than all
 * at the top of the hour, and a restart (or a Lambda's next invocation) keeps every watch in
 * its place instead of bunching the overdue ones together.
 */
import { createHash } from 'node:crypto';

/** A stable offset in [0, everyMs) for `name`. */
export function phaseOf(name: string, everyMs: number): number {
  const hash = createHash('sha256').update(name).digest();
  // 48 bits are plenty to spread any interval a duration can name evenly.
  return hash.readUIntBE(0, 6) % everyMs;
}

/** The first check time of `name` strictly after `after`: phase + k * everyMs. */
export function nextSlot(name: string, everyMs: number, after: number): number {
  const phase = phaseOf(name, everyMs);
  const periods = Math.floor((after - phase) / everyMs) + 1;
  return phase + periods * everyMs;
}
