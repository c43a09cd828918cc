import type { LookupAddress } from 'node:dns';
import { afterEach, describe, expect, it } from 'vitest';
import { type Resolver, systemResolver } from '../lib/registry/destinations.ts';
import type { HttpUpstreamOptions } from '../lib/registry/http-upstream.ts';
import { type FakeRegistry, makeBlob, pushImage } from './support/fake-registry.ts';
import { Harness, REGISTRY, readAll, rejection, repoOf } from './support/upstream-harness.ts';

/**
 * The address rule of lib/registry/destinations.ts, end to end: a hostile registry on
 * 127.0.0.1 points its token realm or a blob redirect at a second server (the "bystander"),
 * and the bystander must see no request at all. Real servers, real sockets; only DNS answers
 * and the private/public verdict on a loopback registry are injected.
 */

const harness = new Harness();
afterEach(() => harness.close());

const app = repoOf('library/app');
// Without the guard, the metadata forms would try to connect to 169.254.169.254 and friends.
const SHORT = { timeouts: { connectMs: 500 } } satisfies Partial<HttpUpstreamOptions>;
const AS_PUBLIC = {
  ...SHORT,
  addressRule: { registryReach: () => 'public' as const },
} satisfies Partial<HttpUpstreamOptions>;

/** node:dns, except for the names in `answers`. */
function resolverWith(answers: Record<string, string[]>): Resolver {
  return async (hostname, options) => {
    const addresses = answers[hostname];
    if (!addresses) return systemResolver(hostname, options);
    return addresses.map(
      (address): LookupAddress => ({
        address,
        family: address.includes(':') ? 6 : 4,
      }),
    );
  };
}

function portOf(server: FakeRegistry): string {
  return server.url.port;
}

/** Makes every manifest GET answer 401 with a bearer challenge naming `realm`. */
function challengeWith(registry: FakeRegistry, realm: string): void {
  registry.inject(registry.manifestPath('library/app', '1'), {
    kind: 'status',
    status: 401,
    headers: { 'www-authenticate': `Bearer realm="${realm}",service="fake"` },
    times: 10,
  });
}

async function blobSetup(options: Partial<HttpUpstreamOptions> = SHORT) {
  const registry = await harness.registry();
  const bystander = await harness.registry();
  const bytes = makeBlob(1000);
  const digest = registry.addBlob(bytes);
  bystander.addBlob(bytes);
  const path = registry.blobPath('library/app', digest);
  const upstream = harness.upstream(registry, options);
  return { registry, bystander, bytes, digest, path, upstream, blob: { digest, size: 1000 } };
}

const EMBEDDED_HOSTS = [
  ['IPv4-mapped loopback', '[::ffff:7f00:1]'],
  ['IPv4-mapped loopback, dotted', '[::ffff:127.0.0.1]'],
  ['IPv4-mapped AWS/GCP metadata', '[::ffff:169.254.169.254]'],
  ['IPv4-mapped Alibaba metadata', '[::ffff:100.100.100.200]'],
  ['NAT64 loopback', '[64:ff9b::7f00:1]'],
  ['IPv4-compatible loopback', '[::127.0.0.1]'],
];

describe('a registry-chosen URL that embeds an IPv4 address', () => {
  it.each(EMBEDDED_HOSTS)('refuses a token realm at %s', async (_name, host) => {
    const registry = await harness.registry();
    const bystander = await harness.registry({ auth: { kind: 'bearer' } });
    pushImage(registry, 'library/app', '1');
    const realm = `http://${host}:${portOf(bystander)}/token`;
    challengeWith(registry, realm);

    const error = await rejection(harness.upstream(registry, SHORT).getManifest(app, '1'));
    expect(error.code).toBe('UPSTREAM_ERROR');
    expect(error.message).toBe(
      `refusing token realm of ${REGISTRY} to ${new URL(realm).host}: address not allowed`,
    );
    expect(bystander.requests).toHaveLength(0);
    // Refused, not retried: the registry saw the one request that got the challenge.
    expect(registry.count(registry.manifestPath('library/app', '1'))).toBe(1);
  });

  it.each(EMBEDDED_HOSTS)('refuses a blob redirect to %s', async (_name, host) => {
    const { registry, bystander, digest, path, upstream, blob } = await blobSetup();
    const to = `http://${host}:${portOf(bystander)}/cdn/${digest}`;
    registry.inject(path, { kind: 'redirect', to, times: 10 });

    const error = await rejection(upstream.getBlob(app, blob));
    expect(error.code).toBe('UPSTREAM_ERROR');
    expect(error.message).toBe(
      `refusing redirect from ${registry.host} to ${new URL(to).host}: address not allowed`,
    );
    expect(bystander.requests).toHaveLength(0);
  });
});

describe('a registry that counts as public', () => {
  it('is still reached at its own configured loopback URL', async () => {
    const registry = await harness.registry({ auth: { kind: 'bearer' } });
    pushImage(registry, 'library/app', '1');
    // Its realm is on its own origin, which the operator configured: trusted.
    await harness.upstream(registry, AS_PUBLIC).getManifest(app, '1');
    expect(registry.count('/token')).toBe(1);
  });

  it.each([
    ['a loopback literal', '127.0.0.1'],
    ['localhost', 'localhost'],
  ])('may not point its token realm at %s', async (_name, hostname) => {
    const registry = await harness.registry();
    const bystander = await harness.registry({ auth: { kind: 'bearer' } });
    pushImage(registry, 'library/app', '1');
    const realm = `http://${hostname}:${portOf(bystander)}/token`;
    challengeWith(registry, realm);

    const error = await rejection(harness.upstream(registry, AS_PUBLIC).getManifest(app, '1'));
    expect(error.message).toBe(
      `refusing token realm of ${REGISTRY} to ${hostname}:${portOf(bystander)}: address not allowed`,
    );
    expect(bystander.requests).toHaveLength(0);
  });

  it('may not redirect a blob GET to a loopback CDN', async () => {
    const { registry, bystander, digest, path, upstream, blob } = await blobSetup(AS_PUBLIC);
    registry.inject(path, { kind: 'redirect', to: bystander.cdnUrl(digest), times: 10 });

    const error = await rejection(upstream.getBlob(app, blob));
    expect(error.message).toBe(
      `refusing redirect from ${registry.host} to ${bystander.host}: address not allowed`,
    );
    expect(bystander.requests).toHaveLength(0);
  });

  it('may not reach loopback through a name that resolves there (refused at connect)', async () => {
    const resolve = resolverWith({ 'cdn.test': ['127.0.0.1'] });
    const { registry, bystander, digest, path, upstream, blob } = await blobSetup({
      ...AS_PUBLIC,
      addressRule: { ...AS_PUBLIC.addressRule, resolve },
    });
    const to = `http://cdn.test:${portOf(bystander)}/cdn/${digest}`;
    registry.inject(path, { kind: 'redirect', to, times: 10 });

    const error = await rejection(upstream.getBlob(app, blob));
    expect(error.code).toBe('UPSTREAM_ERROR');
    expect(error.message).toBe(
      `refusing redirect from ${registry.host} to cdn.test:${portOf(bystander)}: address not allowed (cdn.test resolves to 127.0.0.1)`,
    );
    expect(bystander.requests).toHaveLength(0);
  });
});

describe('names resolved at connect time', () => {
  it('lets a private registry redirect to a name that resolves to loopback', async () => {
    const resolve = resolverWith({ 'cdn.test': ['127.0.0.1'] });
    const { registry, bystander, bytes, digest, path, upstream, blob } = await blobSetup({
      ...SHORT,
      addressRule: { resolve },
    });
    registry.inject(path, {
      kind: 'redirect',
      to: `http://cdn.test:${portOf(bystander)}/cdn/${digest}`,
    });
    expect((await readAll(await upstream.getBlob(app, blob))).equals(bytes)).toBe(true);
    expect(bystander.count(`/cdn/${digest}`)).toBe(1);
  });

  it.each([
    ['AWS/GCP metadata', '169.254.169.254'],
    ['IPv4-mapped metadata in an AAAA answer', '::ffff:a9fe:a9fe'],
    ['AWS IPv6 metadata', 'fd00:ec2::254'],
    ['the unspecified address', '0.0.0.0'],
  ])('refuses, even for a private registry, a name that resolves to %s', async (_name, address) => {
    const resolve = resolverWith({ 'cdn.test': [address] });
    const { registry, bystander, digest, path, upstream, blob } = await blobSetup({
      ...SHORT,
      addressRule: { resolve },
    });
    const to = `http://cdn.test:${portOf(bystander)}/cdn/${digest}`;
    registry.inject(path, { kind: 'redirect', to, times: 10 });

    const error = await rejection(upstream.getBlob(app, blob));
    expect(error.message).toBe(
      `refusing redirect from ${registry.host} to cdn.test:${portOf(bystander)}: address not allowed (cdn.test resolves to ${address})`,
    );
    expect(bystander.requests).toHaveLength(0);
  });

  it('connects only to the allowed addresses of a name with mixed answers', async () => {
    // A rebinding answer: one forbidden address beside the real one.
    const resolve = resolverWith({ 'cdn.test': ['169.254.169.254', '127.0.0.1'] });
    const { registry, bystander, bytes, digest, path, upstream, blob } = await blobSetup({
      ...SHORT,
      addressRule: { resolve },
    });
    registry.inject(path, {
      kind: 'redirect',
      to: `http://cdn.test:${portOf(bystander)}/cdn/${digest}`,
    });
    expect((await readAll(await upstream.getBlob(app, blob))).equals(bytes)).toBe(true);
  });

  it('classifies a configured name by what it resolves to', async () => {
    // registry.test resolves only to loopback, so the registry is private and may redirect to
    // a loopback CDN; the configured name itself goes through the guarded lookup too.
    const resolve = resolverWith({ 'registry.test': ['127.0.0.1'] });
    const registry = await harness.registry();
    const cdn = await harness.registry();
    const bytes = makeBlob(1000);
    const digest = registry.addBlob(bytes);
    cdn.addBlob(bytes);
    registry.inject(registry.blobPath('library/app', digest), {
      kind: 'redirect',
      to: cdn.cdnUrl(digest),
    });
    const base = new URL(`http://registry.test:${portOf(registry)}`);
    const upstream = harness.upstream(registry, {
      ...SHORT,
      registries: new Map([[REGISTRY, base]]),
      addressRule: { resolve },
    });
    const stream = await upstream.getBlob(app, { digest, size: 1000 });
    expect((await readAll(stream)).equals(bytes)).toBe(true);
    expect(cdn.count(`/cdn/${digest}`)).toBe(1);
  });
});

describe('the configured registry URL', () => {
  it('is refused when it names a metadata address, before any connection', async () => {
    const registry = await harness.registry();
    const upstream = harness.upstream(registry, {
      ...SHORT,
      registries: new Map([[REGISTRY, new URL(`http://[::ffff:a9fe:a9fe]:${portOf(registry)}`)]]),
    });
    const error = await rejection(upstream.getManifest(app, '1'));
    expect(error.message).toBe(
      `refusing URL of registry ${REGISTRY} to [::ffff:a9fe:a9fe]:${portOf(registry)}: address not allowed`,
    );
  });

  it('is refused at connect time when its name resolves to a metadata address', async () => {
    const registry = await harness.registry();
    const base = new URL(`http://registry.test:${portOf(registry)}`);
    const upstream = harness.upstream(registry, {
      ...SHORT,
      registries: new Map([[REGISTRY, base]]),
      addressRule: { resolve: resolverWith({ 'registry.test': ['169.254.169.254'] }) },
    });
    const error = await rejection(upstream.getManifest(app, '1'));
    expect(error.message).toBe(
      `refusing URL of registry ${REGISTRY} to ${base.host}: address not allowed (registry.test resolves to 169.254.169.254)`,
    );
  });
});
