import { describe, expect, it } from 'vitest';
import { booleanFilter, globToRegExp, matchesLabel, parseFilters } from '../lib/filters.ts';

describe('parseFilters', () => {
  it.each([
    ['{"dangling":{"true":true}}', 'dangling', ['true']],
    ['{"dangling":["false"]}', 'dangling', ['false']],
    ['{"reference":{"nginx":true,"alpine:*":true}}', 'reference', ['nginx', 'alpine:*']],
  ])('reads %s', (raw, name, values) => {
    expect(parseFilters(raw, ['dangling', 'reference']).get(name)).toEqual(values);
  });

  it.each([
    ['not json', /not JSON/],
    ['[1]', /expected a JSON object/],
    ['{"bogus":{"x":true}}', /invalid filter 'bogus'/],
  ])('refuses %s', (raw, message) => {
    expect(() => parseFilters(raw, ['dangling'])).toThrow(message);
  });

  it('reads booleans the way Docker does', () => {
    expect(booleanFilter(parseFilters('{"dangling":{"1":true}}', ['dangling']), 'dangling')).toBe(
      true,
    );
    expect(
      booleanFilter(parseFilters('{"dangling":{"false":true}}', ['dangling']), 'dangling'),
    ).toBe(false);
    expect(() =>
      booleanFilter(parseFilters('{"dangling":{"maybe":true}}', ['dangling']), 'dangling'),
    ).toThrow(/invalid filter 'dangling=maybe'/);
  });
});

describe('globToRegExp (Go path.Match)', () => {
  it.each([
    ['nginx', 'nginx', true],
    ['nginx*', 'nginx:latest', true],
    ['*', 'team/app', false],
    ['*/app', 'team/app', true],
    ['alpine:3.?', 'alpine:3.9', true],
    ['alpine:3.?', 'alpine:3.19', false],
    ['a[0-9]', 'a5', true],
    ['a.b', 'axb', false],
  ])('%s matches %s: %s', (pattern, value, expected) => {
    expect(globToRegExp(pattern).test(value)).toBe(expected);
  });
});

describe('matchesLabel', () => {
  it.each([
    ['team', true],
    ['team=ci', true],
    ['team=dev', false],
    ['other', false],
  ])('%s', (filter, expected) => {
    expect(matchesLabel({ team: 'ci' }, filter)).toBe(expected);
  });
});
