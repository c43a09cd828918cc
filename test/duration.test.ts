import { describe, expect, it } from 'vitest';
import { formatDuration, parseDuration } from '../lib/duration.ts';
import { InvalidArgumentError } from '../lib/errors.ts';

const SECOND = 1_000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

describe('parseDuration', () => {
  const valid: [string, number][] = [
    ['0', 0],
    ['0s', 0],
    ['90s', 90 * SECOND],
    ['5m', 5 * MINUTE],
    ['2h', 2 * HOUR],
    ['1h30m', HOUR + 30 * MINUTE],
    ['24h', DAY],
    ['7d', 7 * DAY],
    ['1d12h', DAY + 12 * HOUR],
    ['1.5h', HOUR + 30 * MINUTE],
    ['.5s', 500],
    ['1.s', SECOND],
    ['250ms', 250],
    ['1500us', 2],
    ['1500µs', 2],
    ['1000000ns', 1],
    ['2m0s', 2 * MINUTE],
    [' 5m ', 5 * MINUTE],
  ];
  it.each(valid)('%j -> %d ms', (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  const invalid: [string, RegExp][] = [
    ['', /use a number and a unit/],
    ['5', /use a number and a unit/],
    ['m', /use a number and a unit/],
    ['-5m', /use a number and a unit/],
    ['+5m', /use a number and a unit/],
    ['5 m', /use a number and a unit/],
    ['1h 30m', /use a number and a unit/],
    ['5x', /unknown unit "x"/],
    ['5mins', /unknown unit "mins"/],
    ['1w', /unknown unit "w"/],
    ['5M', /use a number and a unit/],
    ['1h30', /use a number and a unit/],
    ['99999999999999999999d', /too long/],
  ];
  it.each(invalid)('%j fails', (text, message) => {
    expect(() => parseDuration(text)).toThrow(InvalidArgumentError);
    expect(() => parseDuration(text)).toThrow(message);
  });

  it('names the input in the message', () => {
    expect(() => parseDuration('soon')).toThrow('invalid duration "soon"');
  });
});

describe('formatDuration', () => {
  const cases: [number, string][] = [
    [0, '0s'],
    [250, '250ms'],
    [90 * SECOND, '1m30s'],
    [5 * MINUTE, '5m'],
    [7 * DAY, '7d'],
    [DAY + HOUR + MINUTE + SECOND + 1, '1d1h1m1s1ms'],
  ];
  it.each(cases)('%d -> %s', (ms, text) => {
    expect(formatDuration(ms)).toBe(text);
    // What it prints, it parses back.
    expect(parseDuration(text)).toBe(ms);
  });
});
