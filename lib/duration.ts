/**
 * Go-style durations (`90s`, `1h30m`, `1.5h`), as Docker users write them in `--filter
 * until=24h` and as operators write them in settings, plus `d` for days because TTLs and
 * retention periods are naturally counted in days.
 */
import { InvalidArgumentError } from './errors.ts';

const MS_PER_UNIT: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  µs: 1e-3,
  μs: 1e-3,
  ms: 1,
  s: 1_000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};

// A number (integer or decimal, as Go accepts `1.`, `.5`) followed by a unit, repeated.
const PART = /(\d+\.?\d*|\.\d+)([a-zµμ]+)/gy;

/**
 * Parses a duration into whole milliseconds. Signs are refused: every duration this project
 * reads is a span of time going back (`until`) or forward (TTL), never negative.
 */
export function parseDuration(text: string): number {
  const value = text.trim();
  // Go allows a bare zero without a unit; anything else needs one, so `5` is not five seconds.
  if (value === '0') return 0;
  let total = 0;
  let parts = 0;
  PART.lastIndex = 0;
  while (PART.lastIndex < value.length) {
    const match = PART.exec(value);
    if (!match) throw invalid(text);
    const [, amount = '', unit = ''] = match;
    const scale = MS_PER_UNIT[unit];
    if (scale === undefined) {
      throw new InvalidArgumentError(
        `invalid duration ${JSON.stringify(text)}: unknown unit ${JSON.stringify(unit)} (use ms, s, m, h or d)`,
      );
    }
    total += Number(amount) * scale;
    parts++;
  }
  if (parts === 0) throw invalid(text);
  if (!Number.isSafeInteger(Math.round(total))) {
    throw new InvalidArgumentError(`invalid duration ${JSON.stringify(text)}: too long`);
  }
  return Math.round(total);
}

/** The shortest Go-style spelling of a span, for messages and `/cache/...` reports. */
export function formatDuration(ms: number): string {
  if (ms === 0) return '0s';
  let rest = Math.round(ms);
  let out = '';
  for (const [unit, size] of [
    ['d', 86_400_000],
    ['h', 3_600_000],
    ['m', 60_000],
    ['s', 1_000],
  ] as const) {
    if (rest >= size) {
      out += `${Math.floor(rest / size)}${unit}`;
      rest %= size;
    }
  }
  return rest > 0 ? `${out}${rest}ms` : out;
}

function invalid(text: string): InvalidArgumentError {
  return new InvalidArgumentError(
    `invalid duration ${JSON.stringify(text)}: use a number and a unit, e.g. 90s, 5m, 1h30m or 7d`,
  );
}
