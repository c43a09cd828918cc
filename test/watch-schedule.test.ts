/**
 * The pure parts of the watch schedule: where each watch's checks fall in its interval, what a
 * background budget setting means, when a paused registry resumes, and what a PUT may ask for.
 */
import { describe, expect, it } from 'vitest';
import {
  DEFAULT_PAUSE_MS,
  nextHour,
  parseBackgroundBudgets,
  pauseUntil,
  reserveReached,
} from '../lib/watch/background-budget.ts';
import { nextSlot, phaseOf } from '../lib/watch/schedule.ts';
import { parseWatchSettings } from '../lib/watch/watch-settings.ts';

const HOUR = 3_600_000;

describe('watch slots', () => {
  it('spreads a thousand hourly watches over the hour instead of firing them at once', () => {
    const minutes = new Array<number>(60).fill(0);
    for (let i = 0; i < 1000; i++) {
      minutes[Math.floor(phaseOf(`docker.io/library/app${i}:1`, HOUR) / 60_000)]!++;
    }
    // About 17 a minute; no minute empty, none with more than twice its share.
    expect(Math.min(...minutes)).toBeGreaterThan(0);
    expect(Math.max(...minutes)).toBeLessThan(2 * (1000 / 60));
  });

  it('gives the next slot strictly after a time, one interval apart, and the same after a restart', () => {
    const name = 'docker.io/library/nginx:1.27';
    const now = Date.UTC(2026, 11, 6, 3, 0, 0);
    const first = nextSlot(name, HOUR, now);
    expect(first).toBeGreaterThan(now);
    expect(first - now).toBeLessThanOrEqual(HOUR);
    expect(nextSlot(name, HOUR, first)).toBe(first + HOUR);
    expect(nextSlot(name, HOUR, first - 1)).toBe(first);
    expect((first - phaseOf(name, HOUR)) % HOUR).toBe(0);
  });
});

describe('background budgets', () => {
  const fail = (message: string) => new Error(message);

  it('keeps the defaults for registries a setting does not name', () => {
    const budgets = parseBackgroundBudgets('ghcr.io=100/h', fail);
    expect(budgets.byRegistry.get('docker.io')).toEqual({ pullsPerHour: 10, reserve: 0.5 });
    expect(budgets.byRegistry.get('ghcr.io')).toEqual({ pullsPerHour: 100, reserve: 0.25 });
    expect(budgets.fallback).toEqual({ pullsPerHour: 30, reserve: 0.25 });
  });

  it('reads pulls per hour, a reserve and a fallback for the rest', () => {
    const budgets = parseBackgroundBudgets('docker.io=20/h:60%, *=5/h:10% ,', fail);
    expect(budgets.byRegistry.get('docker.io')).toEqual({ pullsPerHour: 20, reserve: 0.6 });
    expect(budgets.fallback).toEqual({ pullsPerHour: 5, reserve: 0.1 });
  });

  it.each(['docker.io', 'docker.io=10', 'docker.io=10/m', 'docker.io=10/h:150%', '=1/h'])(
    'refuses %j with the syntax in the message',
    (text) => {
      expect(() => parseBackgroundBudgets(text, fail)).toThrow(/registry=<pulls>\/h|at most 100%/);
    },
  );

  it('reaches the reserve at or below the kept share, or at zero with no limit known', () => {
    const budget = { pullsPerHour: 10, reserve: 0.5 };
    const seen = { observedAt: 0 };
    expect(reserveReached({ ...seen, limit: 100, remaining: 51 }, budget)).toBe(false);
    expect(reserveReached({ ...seen, limit: 100, remaining: 50 }, budget)).toBe(true);
    expect(reserveReached({ ...seen, remaining: 3 }, budget)).toBe(false);
    expect(reserveReached({ ...seen, remaining: 0 }, budget)).toBe(true);
    expect(reserveReached(undefined, budget)).toBe(false);
  });

  it('pauses until Retry-After, else the announced reset, else the window, else 15 minutes', () => {
    const now = 1_000_000;
    const info = { observedAt: now - 1000, windowSeconds: 3600, resetAt: now + 60_000 };
    expect(pauseUntil(now, info, now + 5000)).toBe(now + 5000);
    expect(pauseUntil(now, info)).toBe(now + 60_000);
    expect(pauseUntil(now, { observedAt: now - 1000, windowSeconds: 3600 })).toBe(
      now - 1000 + 3_600_000,
    );
    expect(pauseUntil(now, undefined)).toBe(now + DEFAULT_PAUSE_MS);
    // A reset already past is no reason to resume at once.
    expect(pauseUntil(now, { observedAt: 0, resetAt: now - 1 })).toBe(now + DEFAULT_PAUSE_MS);
    expect(nextHour(2 * HOUR + 5)).toBe(3 * HOUR);
  });
});

describe('PUT /cache/watch settings', () => {
  const registries = new Map([['docker.io', new URL('https://registry-1.docker.io')]]);
  const limits = { minEveryMs: 60_000 };
  const parse = (name: string, query: string) =>
    parseWatchSettings(name, new URLSearchParams(query), registries, limits);

  it('normalises the reference, the interval and the platforms', () => {
    expect(
      parse(
        'nginx',
        'every=90m&platform=linux/arm64&platform=LINUX/AMD64&platform=linux/arm64/v8&pin=1',
      ),
    ).toEqual({
      name: 'docker.io/library/nginx:latest',
      registry: 'docker.io',
      everyMs: 90 * 60_000,
      platforms: ['linux/amd64', 'linux/arm64/v8'],
      pin: true,
    });
    expect(parse('team/app:2', '')).toMatchObject({ everyMs: HOUR, platforms: [], pin: false });
  });

  it.each([
    [`nginx@sha256:${'a'.repeat(64)}`, '', 'never moves'],
    ['ghcr.io/o/a:1', '', 'not allowed'],
    ['nginx:1', 'every=30s', 'every must be between 60s and 7d'],
    ['nginx:1', 'every=8d', 'every must be between'],
    ['nginx:1', 'every=soon', 'invalid duration'],
    ['nginx:1', 'platform=linux', 'invalid platform'],
    ['nginx:1', 'pin=maybe', 'pin must be 1 or 0'],
    ['Nginx:1', '', 'lowercase'],
  ])('refuses %s?%s', (name, query, message) => {
    expect(() => parse(name, query)).toThrow(message);
  });
});
