import type { LookupAddress } from 'node:dns';
import ipaddr from 'ipaddr.js';
import { describe, expect, it } from 'vitest';
import { UpstreamError } from '../lib/errors.ts';
import {
  ADDRESS_NOT_ALLOWED,
  assertSafeDestination,
  describeAddress,
  destinationRefusal,
  guardedLookup,
  type Reach,
  RegistryReachCache,
  type Resolver,
  registryReach,
  ruleFor,
} from '../lib/registry/destinations.ts';
import { ManualClock } from './support/upstream-harness.ts';

/** The address rule of lib/registry/destinations.ts, case by case. */

describe('describeAddress', () => {
  // [address, ipaddr.js 2.x range (or ipv4Compatible, ours), class, embedded IPv4]
  it.each([
    ['8.8.8.8', 'unicast', 'public', []],
    ['2606:4700::1111', 'unicast', 'public', []],
    ['172.32.0.1', 'unicast', 'public', []],
    ['127.0.0.1', 'loopback', 'private', []],
    ['127.255.0.9', 'loopback', 'private', []],
    ['::1', 'loopback', 'private', []],
    ['10.1.2.3', 'private', 'private', []],
    ['172.16.0.1', 'private', 'private', []],
    ['192.168.1.1', 'private', 'private', []],
    ['100.64.0.1', 'carrierGradeNat', 'private', []],
    ['fd12:3456::1', 'uniqueLocal', 'private', []],
    ['2001:db8::1', 'reserved', 'private', []],
    ['169.254.169.254', 'linkLocal', 'never', []],
    ['fe80::1', 'linkLocal', 'never', []],
    ['fe80::1%eth0', 'linkLocal', 'never', []],
    ['100.100.100.200', 'carrierGradeNat', 'never', []],
    ['fd00:ec2::254', 'uniqueLocal', 'never', []],
    ['fd00:ec2:0:0:0:0:0:254', 'uniqueLocal', 'never', []],
    ['0.0.0.0', 'unspecified', 'never', []],
    ['0.1.2.3', 'unspecified', 'never', []],
    ['::', 'unspecified', 'never', []],
    ['255.255.255.255', 'broadcast', 'never', []],
    ['224.0.0.1', 'multicast', 'never', []],
    ['ff02::1', 'multicast', 'never', []],
    ['240.0.0.1', 'reserved', 'never', []],
    ['192.0.2.1', 'reserved', 'never', []],
    ['fec0::1', 'deprecatedSiteLocal', 'never', []],
    ['100::1', 'discard', 'never', []],
    // IPv6 addresses that carry an IPv4 address take its class.
    ['::ffff:7f00:1', 'ipv4Mapped', 'private', ['127.0.0.1']],
    ['::ffff:127.0.0.1', 'ipv4Mapped', 'private', ['127.0.0.1']],
    ['::ffff:a9fe:a9fe', 'ipv4Mapped', 'never', ['169.254.169.254']],
    ['::ffff:169.254.169.254', 'ipv4Mapped', 'never', ['169.254.169.254']],
    ['::ffff:6464:64c8', 'ipv4Mapped', 'never', ['100.100.100.200']],
    ['::ffff:808:808', 'ipv4Mapped', 'public', ['8.8.8.8']],
    ['::ffff:0:7f00:1', 'rfc6145', 'private', ['127.0.0.1']],
    ['64:ff9b::a9fe:a9fe', 'rfc6052', 'never', ['169.254.169.254']],
    ['64:ff9b::808:808', 'rfc6052', 'public', ['8.8.8.8']],
    ['64:ff9b:1:7f00:0:100::', 'rfc6052', 'private', ['127.0.0.1']],
    ['2002:a9fe:a9fe::', '6to4', 'never', ['169.254.169.254']],
    ['2002:808:808::1', '6to4', 'public', ['8.8.8.8']],
    // Teredo: server 65.54.227.120, client 192.0.2.45 (TEST-NET, reserved).
    ['2001:0:4136:e378:8000:63bf:3fff:fdd2', 'teredo', 'never', ['65.54.227.120', '192.0.2.45']],
    ['2001:0:808:808::80ff:fffe', 'teredo', 'private', ['8.8.8.8', '127.0.0.1']],
    ['::7f00:1', 'ipv4Compatible', 'private', ['127.0.0.1']],
    ['::a9fe:a9fe', 'ipv4Compatible', 'never', ['169.254.169.254']],
  ])('%s is %s, %s', (address, range, cls, embedded) => {
    expect(describeAddress(address)).toEqual({ range, class: cls, embedded });
  });

  it('agrees with ipaddr.process on IPv4-mapped addresses', () => {
    for (const address of ['::ffff:7f00:1', '::ffff:a9fe:a9fe', '::ffff:6464:64c8']) {
      const processed = ipaddr.process(address).toString();
      expect(describeAddress(address)?.embedded).toEqual([processed]);
    }
  });

  it.each(['registry-1.docker.io', 'localhost', '', '0x7f.1', '2130706433'])(
    '%j is not an address',
    (name) => {
      expect(describeAddress(name)).toBeUndefined();
    },
  );
});

const PUBLIC = { reach: 'public' as Reach, chosenByRegistry: true };
const PRIVATE = { reach: 'private' as Reach, chosenByRegistry: true };
const CONFIGURED = { reach: 'private' as Reach, chosenByRegistry: false };
const verdict = (url: string, rule: typeof PUBLIC) =>
  destinationRefusal(new URL(url), rule) === undefined ? 'allow' : 'refuse';

describe('a realm or redirect target (chosen by the registry)', () => {
  // [URL as the registry sends it, for a public registry, for a private registry]
  it.each([
    // Embedded IPv4 in an IPv6 literal: refused whatever it embeds.
    ['http://[::ffff:7f00:1]:5000/token', 'refuse', 'refuse'],
    ['http://[::ffff:127.0.0.1]:5000/token', 'refuse', 'refuse'],
    ['http://[::ffff:a9fe:a9fe]/latest', 'refuse', 'refuse'],
    ['http://[::ffff:169.254.169.254]/latest', 'refuse', 'refuse'],
    ['http://[::ffff:6464:64c8]/', 'refuse', 'refuse'],
    ['http://[::ffff:8.8.8.8]/', 'refuse', 'refuse'],
    ['http://[64:ff9b::a9fe:a9fe]/', 'refuse', 'refuse'],
    ['http://[64:ff9b::808:808]/', 'refuse', 'refuse'],
    ['http://[2002:a9fe:a9fe::]/', 'refuse', 'refuse'],
    ['http://[2001:0:808:808::80ff:fffe]/', 'refuse', 'refuse'],
    ['http://[::7f00:1]/', 'refuse', 'refuse'],
    // The never class.
    ['http://0.0.0.0:5000/', 'refuse', 'refuse'],
    ['http://169.254.169.254/latest/meta-data/', 'refuse', 'refuse'],
    ['http://100.100.100.200/', 'refuse', 'refuse'],
    ['http://[fd00:ec2::254]/', 'refuse', 'refuse'],
    ['http://[fe80::1]/', 'refuse', 'refuse'],
    ['http://[::]/', 'refuse', 'refuse'],
    ['http://255.255.255.255/', 'refuse', 'refuse'],
    ['http://240.0.0.1/', 'refuse', 'refuse'],
    ['http://metadata.google.internal/computeMetadata/v1/', 'refuse', 'refuse'],
    ['http://Metadata.Google.Internal./computeMetadata/v1/', 'refuse', 'refuse'],
    ['http://metadata/', 'refuse', 'refuse'],
    ['http://instance-data/latest/', 'refuse', 'refuse'],
    // Private: only for a private registry. The URL parser normalises the odd IPv4 forms.
    ['http://127.0.0.1:5000/token', 'refuse', 'allow'],
    ['http://2130706433/', 'refuse', 'allow'],
    ['http://0x7f.1/', 'refuse', 'allow'],
    ['http://0177.0.0.1/', 'refuse', 'allow'],
    ['http://[::1]:5000/', 'refuse', 'allow'],
    ['http://10.1.2.3/', 'refuse', 'allow'],
    ['http://172.16.9.9/', 'refuse', 'allow'],
    ['http://192.168.0.10/', 'refuse', 'allow'],
    ['http://100.64.1.1/', 'refuse', 'allow'],
    ['http://[fd12::1]/', 'refuse', 'allow'],
    ['http://localhost:5000/token', 'refuse', 'allow'],
    ['http://LOCALHOST./token', 'refuse', 'allow'],
    ['http://cdn.localhost/', 'refuse', 'allow'],
    // Public.
    ['http://8.8.8.8/', 'allow', 'allow'],
    ['http://[2606:4700::1111]/', 'allow', 'allow'],
    ['https://auth.docker.io/token', 'allow', 'allow'],
    // A name: judged when it resolves (guardedLookup).
    ['https://production.cloudflare.docker.com/x?sig=1', 'allow', 'allow'],
    // Not http, or with credentials.
    ['file:///etc/passwd', 'refuse', 'refuse'],
    ['ftp://cdn.example/blob', 'refuse', 'refuse'],
    ['https://user:pw@cdn.example/blob', 'refuse', 'refuse'],
  ])('%s: %s from a public registry, %s from a private one', (url, fromPublic, fromPrivate) => {
    expect([verdict(url, PUBLIC), verdict(url, PRIVATE)]).toEqual([fromPublic, fromPrivate]);
  });
});

describe('an operator-configured registry URL', () => {
  it.each([
    ['http://127.0.0.1:5000', 'allow'],
    ['http://localhost:5000', 'allow'],
    ['http://10.0.0.5:5000', 'allow'],
    ['http://[::ffff:7f00:1]:5000', 'allow'],
    ['https://registry-1.docker.io', 'allow'],
    ['http://169.254.169.254', 'refuse'],
    ['http://[::ffff:a9fe:a9fe]', 'refuse'],
    ['http://[fd00:ec2::254]', 'refuse'],
    ['http://0.0.0.0:5000', 'refuse'],
    ['http://metadata.google.internal', 'refuse'],
  ])('%s: %s', (url, expected) => {
    expect(verdict(url, CONFIGURED)).toBe(expected);
  });

  it('covers the registry origin only; other origins are chosen by the registry', () => {
    const registry = { origin: 'http://127.0.0.1:5000', reach: 'public' as Reach };
    expect(ruleFor(new URL('http://127.0.0.1:5000/token'), registry)).toEqual(CONFIGURED);
    expect(ruleFor(new URL('http://127.0.0.1:5001/token'), registry)).toEqual(PUBLIC);
  });
});

describe('assertSafeDestination', () => {
  it('names the purpose and the host', () => {
    const realm = new URL('http://[::ffff:169.254.169.254]:8080/token');
    let caught: unknown;
    try {
      assertSafeDestination(realm, 'token realm of ghcr.io', PRIVATE);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(UpstreamError);
    expect((caught as UpstreamError).code).toBe('UPSTREAM_ERROR');
    expect((caught as UpstreamError).message).toBe(
      'refusing token realm of ghcr.io to [::ffff:a9fe:a9fe]:8080: address not allowed',
    );
  });

  it('is strict by default (a URL a public registry chose)', () => {
    expect(() => assertSafeDestination(new URL('http://10.0.0.1/'), 'redirect')).toThrow(
      'refusing redirect to 10.0.0.1: address not allowed',
    );
  });
});

function answers(...addresses: string[]): Resolver {
  return async () =>
    addresses.map((address): LookupAddress => ({ address, family: address.includes(':') ? 6 : 4 }));
}

function lookupWith(reach: Reach, resolve: Resolver, all: boolean) {
  return new Promise<{ err: NodeJS.ErrnoException | null; address: unknown; family?: number }>(
    (done) => {
      guardedLookup(reach, resolve)('cdn.test', { all }, (err, address, family) =>
        done({ err, address, family }),
      );
    },
  );
}

describe('guardedLookup', () => {
  it.each([
    ['public', ['127.0.0.1']],
    ['public', ['10.0.0.1', 'fd12::1']],
    ['public', ['::ffff:7f00:1']],
    ['private', ['169.254.169.254']],
    ['private', ['::ffff:a9fe:a9fe']],
    ['private', ['fd00:ec2::254', '0.0.0.0']],
  ] as const)('refuses for a %s registry a name that resolves to %j', async (reach, addresses) => {
    const { err } = await lookupWith(reach, answers(...addresses), true);
    expect(err?.code).toBe(ADDRESS_NOT_ALLOWED);
    expect(err?.message).toBe(`cdn.test resolves to ${addresses.join(', ')}`);
  });

  it('keeps only the allowed addresses of a mixed answer', async () => {
    const resolve = answers('169.254.169.254', '10.0.0.1', '8.8.8.8');
    expect((await lookupWith('public', resolve, true)).address).toEqual([
      { address: '8.8.8.8', family: 4 },
    ]);
    expect((await lookupWith('private', resolve, true)).address).toEqual([
      { address: '10.0.0.1', family: 4 },
      { address: '8.8.8.8', family: 4 },
    ]);
    expect(await lookupWith('public', resolve, false)).toMatchObject({
      err: null,
      address: '8.8.8.8',
      family: 4,
    });
  });

  it('passes resolver failures through', async () => {
    const failing: Resolver = async () => {
      throw Object.assign(new Error('getaddrinfo ENOTFOUND cdn.test'), { code: 'ENOTFOUND' });
    };
    expect((await lookupWith('public', failing, true)).err?.code).toBe('ENOTFOUND');
  });
});

describe('registryReach', () => {
  it.each([
    ['http://127.0.0.1:5000', [], 'private'],
    ['http://[::1]:5000', [], 'private'],
    ['http://10.0.0.5', [], 'private'],
    ['http://localhost:5000', [], 'private'],
    ['https://8.8.8.8', [], 'public'],
    ['http://169.254.169.254', [], 'public'],
    ['https://registry.internal', ['10.0.0.5', 'fd12::5'], 'private'],
    ['https://registry.internal', ['10.0.0.5', '8.8.8.8'], 'public'],
    ['https://registry.internal', ['::ffff:a00:5'], 'private'],
    ['https://registry-1.docker.io', ['2600:1f18::1', '3.216.34.172'], 'public'],
    ['https://empty.example', [], 'public'],
  ])('%s resolving to %j is %s', async (base, addresses, expected) => {
    expect(await registryReach(new URL(base), answers(...addresses))).toBe(expected);
  });

  it('is undefined when the name does not resolve', async () => {
    const failing: Resolver = async () => {
      throw new Error('ENOTFOUND');
    };
    expect(await registryReach(new URL('https://gone.example'), failing)).toBeUndefined();
  });
});

describe('RegistryReachCache', () => {
  function counting(first: string[], later: string[]) {
    const calls: string[] = [];
    const resolve: Resolver = async (hostname) => {
      calls.push(hostname);
      return (calls.length === 1 ? first : later).map((address) => ({ address, family: 4 }));
    };
    return { calls, resolve };
  }

  it('decides once a minute per registry', async () => {
    const clock = new ManualClock();
    const { calls, resolve } = counting(['10.0.0.5'], ['8.8.8.8']);
    const cache = new RegistryReachCache({ resolve, clock });
    const base = new URL('https://registry.internal');
    expect(await cache.of('registry.internal', base)).toBe('private');
    clock.advance(59_000);
    expect(await cache.of('registry.internal', base)).toBe('private');
    expect(calls).toHaveLength(1);
    clock.advance(2_000);
    // The name now points at a public address: the registry loses its private reach.
    expect(await cache.of('registry.internal', base)).toBe('public');
    expect(calls).toHaveLength(2);
  });

  it('counts an unresolvable registry as public and asks again next time', async () => {
    let calls = 0;
    const resolve: Resolver = async () => {
      calls++;
      throw new Error('EAI_AGAIN');
    };
    const cache = new RegistryReachCache({ resolve, clock: new ManualClock() });
    const base = new URL('https://flaky.internal');
    expect(await cache.of('flaky.internal', base)).toBe('public');
    expect(await cache.of('flaky.internal', base)).toBe('public');
    expect(calls).toBe(2);
  });

  it('uses an injected decision instead of DNS', async () => {
    const { calls, resolve } = counting(['127.0.0.1'], []);
    const cache = new RegistryReachCache({
      resolve,
      clock: new ManualClock(),
      decide: () => 'public',
    });
    expect(await cache.of('fake.test', new URL('http://127.0.0.1:5000'))).toBe('public');
    expect(calls).toHaveLength(0);
  });
});
