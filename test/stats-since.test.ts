import { describe, expect, it } from 'vitest';
import { DEFAULT_STATS_WINDOW_MS, parseSince } from '../lib/stats/stats-report.ts';

const NOW = Date.UTC(2026, 11, 6, 12, 30);
const H = 3_600_000;

describe('parseSince', () => {
  it.each([
    [null, NOW - DEFAULT_STATS_WINDOW_MS],
    ['', NOW - 168 * H],
    ['72h', NOW - 72 * H],
    ['1h30m', NOW - 1.5 * H],
    ['7d', NOW - 168 * H],
    ['0', NOW],
    ['840h', NOW - 840 * H],
    ['2026-12-06T00:00:00Z', Date.UTC(2026, 11, 6)],
    ['2026-12-06t00:00:00z', Date.UTC(2026, 11, 6)],
    ['2026-12-06T02:00:00.5+02:00', Date.UTC(2026, 11, 6) + 500],
  ])('%s', (text, expected) => {
    expect(parseSince(text, NOW)).toBe(expected);
  });

  it.each([
    ['yesterday', /invalid since "yesterday": give an RFC 3339 time/],
    ['72', /invalid since "72"/],
    ['2026-12-06T24:00:00Z', /invalid since/],
    ['-1h', /invalid since/],
    ['2026-12-06', /invalid since/],
    ['2026-12-06 00:00:00Z', /invalid since/],
    ['2026-02-30T00:00:00Z', /invalid since/],
    ['841h', /more than 35 days/],
    ['2026-12-06T13:00:00Z', /in the future/],
  ])('refuses %s', (text, message) => {
    expect(() => parseSince(text, NOW)).toThrow(message);
  });
});
