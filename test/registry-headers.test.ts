import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { MediaType } from '../lib/media-types.ts';
import { readCapped, resolveManifestMediaType } from '../lib/registry/accept.ts';
import { assertSafeDestination, isBlockedAddress } from '../lib/registry/destinations.ts';
import {
  describeRateLimit,
  parseQuota,
  parseRateLimit,
  parseRetryAfter,
} from '../lib/registry/rate-limit.ts';
import { errorText, parseRegistryErrors } from '../lib/registry/registry-errors.ts';
import { backoffDelay, networkError } from '../lib/registry/retry.ts';

const NOW = Date.UTC(2024, 0, 1, 12, 0, 0);

describe('rate-limit headers', () => {
  it.each([
    ['100;w=21600', { quota: 100, window: 21600 }],
    ['76', { quota: 76, window: undefined }],
    [' 0 ; w=60 ', { quota: 0, window: 60 }],
    ['', undefined],
    ['lots', undefined],
    ['-1;w=5', undefined],
  ])('parseQuota(%j)', (value, expected) => {
    expect(parseQuota(value)).toEqual(expected);
  });

  it('reads Docker Hub headers', () => {
    const info = parseRateLimit(
      {
        'ratelimit-limit': '100;w=21600',
        'ratelimit-remaining': '76;w=21600',
        'docker-ratelimit-source': '203.0.113.9',
      },
      NOW,
    );
    expect(info).toEqual({
      limit: 100,
      remaining: 76,
      windowSeconds: 21600,
      source: '203.0.113.9',
      observedAt: NOW,
    });
    expect(parseRateLimit({ 'content-type': 'x' }, NOW)).toBeUndefined();
  });

  it.each([
    ['3', 3000],
    ['0', 0],
    [new Date(NOW + 90_000).toUTCString(), 90_000],
    [new Date(NOW - 5_000).toUTCString(), 0],
    ['soon', undefined],
    [undefined, undefined],
  ])('parseRetryAfter(%j)', (value, expected) => {
    expect(parseRetryAfter(value, NOW)).toBe(expected);
  });

  it('names the limit and when it resets', () => {
    const message = describeRateLimit(
      'docker.io',
      { limit: 100, remaining: 0, windowSeconds: 21600, source: '203.0.113.9', observedAt: NOW },
      3_600_000,
      NOW,
      'You have reached your pull rate limit.',
    );
    expect(message).toBe(
      'docker.io rate limit reached (limit 100 pulls per 6 h for 203.0.113.9): You have reached your pull rate limit.; it resets in 3600 s (at 2024-01-01T13:00:00.000Z), or configure credentials for docker.io',
    );
  });
});

describe('destinations', () => {
  it.each([
    ['169.254.169.254', true],
    ['169.254.1.1', true],
    ['fd00:ec2::254', true],
    ['fe80::1', true],
    ['::ffff:169.254.169.254', true],
    ['100.100.100.200', true],
    ['127.0.0.1', false],
    ['10.0.0.5', false],
    ['2001:db8::1', false],
    ['registry-1.docker.io', false],
  ])('isBlockedAddress(%s) = %s', (address, blocked) => {
    expect(isBlockedAddress(address)).toBe(blocked);
  });

  it.each([
    'http://169.254.169.254/latest/meta-data/',
    'http://[fd00:ec2::254]/',
    'http://metadata.google.internal/computeMetadata/v1/',
    'ftp://cdn.example/blob',
    'https://user:pw@cdn.example/blob',
  ])('refuses %s', (url) => {
    expect(() => assertSafeDestination(new URL(url), 'redirect')).toThrow(/refusing redirect/);
  });

  it('allows ordinary CDN URLs', () => {
    expect(() =>
      assertSafeDestination(new URL('https://production.cloudflare.docker.com/x?sig=1'), 'r'),
    ).not.toThrow();
  });
});

describe('retry helpers', () => {
  it('grows the backoff exponentially within [step/2, step] and caps it', () => {
    const policy = { attempts: 10, baseDelayMs: 100, maxDelayMs: 1000 };
    expect(backoffDelay(policy, 1, () => 0)).toBe(50);
    expect(backoffDelay(policy, 1, () => 1)).toBe(100);
    expect(backoffDelay(policy, 3, () => 1)).toBe(400);
    expect(backoffDelay(policy, 8, () => 1)).toBe(1000);
  });

  it('maps transport errors to domain errors', () => {
    const reset = networkError(Object.assign(new Error('x'), { code: 'ECONNRESET' }), 'GET u');
    expect(reset).toMatchObject({ code: 'UPSTREAM_ERROR', retryable: true });
    const timeout = networkError(
      Object.assign(new Error('x'), { code: 'UND_ERR_HEADERS_TIMEOUT' }),
      'GET u',
    );
    expect(timeout).toMatchObject({ code: 'UPSTREAM_TIMEOUT', retryable: true });
    expect(timeout.message).toBe(
      'GET u: timed out waiting for response headers (UND_ERR_HEADERS_TIMEOUT)',
    );
  });
});

describe('registry error bodies and media types', () => {
  it('words errors as Docker prints them', () => {
    const errors = parseRegistryErrors(
      '{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{}}]}',
    );
    expect(errorText(errors)).toBe('manifest unknown: manifest unknown');
    expect(parseRegistryErrors('<html>')).toEqual([]);
  });

  it.each([
    [MediaType.ociIndex, '{"schemaVersion":2}', MediaType.ociIndex],
    [
      'application/json',
      `{"mediaType":"${MediaType.dockerManifestList}"}`,
      MediaType.dockerManifestList,
    ],
    ['text/plain', '{"schemaVersion":2,"manifests":[]}', MediaType.ociIndex],
    [undefined, '{"schemaVersion":2,"config":{},"layers":[]}', MediaType.ociManifest],
  ])('resolves %s + %s', (contentType, body, expected) => {
    expect(resolveManifestMediaType(contentType, Buffer.from(body), 'x:1')).toBe(expected);
  });

  it.each([
    ['application/json', '{"schemaVersion":1}', 'UNSUPPORTED_MEDIA_TYPE'],
    [MediaType.dockerSchema1, '{}', 'UNSUPPORTED_MEDIA_TYPE'],
    ['application/json', 'not json', 'UPSTREAM_ERROR'],
    ['application/json', '{"schemaVersion":2}', 'UNSUPPORTED_MEDIA_TYPE'],
  ])('refuses %s + %s', (contentType, body, code) => {
    expect(() => resolveManifestMediaType(contentType, Buffer.from(body), 'x:1')).toThrow(
      expect.objectContaining({ code }),
    );
  });
});

describe('readCapped', () => {
  it('stops a body without Content-Length as soon as it passes the cap', async () => {
    let pulled = 0;
    const body = Readable.from(
      (function* () {
        for (let i = 0; i < 100; i++) {
          pulled++;
          yield Buffer.alloc(1000);
        }
      })(),
    );
    await expect(readCapped(body, undefined, 'manifest', 5000)).rejects.toMatchObject({
      code: 'PAYLOAD_TOO_LARGE',
    });
    expect(pulled).toBeLessThan(10);
  });

  it('returns bodies up to the cap', async () => {
    const body = Readable.from([Buffer.alloc(3000), Buffer.alloc(2000)]);
    expect((await readCapped(body, '5000', 'manifest', 5000)).length).toBe(5000);
  });
});
