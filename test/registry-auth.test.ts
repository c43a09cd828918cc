import { afterEach, describe, expect, it } from 'vitest';
import { parseChallenges, TokenCache } from '../lib/registry/auth.ts';
import { basic, makeBlob, pushImage } from './support/fake-registry.ts';
import {
  Harness,
  ManualClock,
  REGISTRY,
  readAll,
  rejection,
  repoOf,
} from './support/upstream-harness.ts';

const harness = new Harness();
afterEach(() => harness.close());

const app = repoOf('library/app');
const creds = { username: 'ci-bot', password: 's3cr3t-pa55' };

describe('parseChallenges', () => {
  it.each([
    [
      'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull"',
      [
        {
          scheme: 'bearer',
          params: {
            realm: 'https://auth.docker.io/token',
            service: 'registry.docker.io',
            scope: 'repository:library/nginx:pull',
          },
        },
      ],
    ],
    ['Basic realm="Registry Realm"', [{ scheme: 'basic', params: { realm: 'Registry Realm' } }]],
    [
      'Basic realm=x, Bearer realm="https://a/t", service=svc',
      [
        { scheme: 'basic', params: { realm: 'x' } },
        { scheme: 'bearer', params: { realm: 'https://a/t', service: 'svc' } },
      ],
    ],
    [
      'Bearer realm="https://a/t?x=1,2",error="invalid_token", scope="a b"',
      [
        {
          scheme: 'bearer',
          params: { realm: 'https://a/t?x=1,2', error: 'invalid_token', scope: 'a b' },
        },
      ],
    ],
    ['Bearer realm="q\\"uote"', [{ scheme: 'bearer', params: { realm: 'q"uote' } }]],
    ['', []],
  ])('parses %s', (header, expected) => {
    expect(parseChallenges(header)).toEqual(expected);
  });

  it('reads several WWW-Authenticate headers', () => {
    const parsed = parseChallenges(['Basic realm=a', 'Bearer realm="https://b"']);
    expect(parsed.map((c) => c.scheme)).toEqual(['basic', 'bearer']);
  });
});

describe('TokenCache', () => {
  it('serves a token until shortly before it expires', () => {
    const cache = new TokenCache();
    cache.set('k', 't', 60, 0);
    expect(cache.get('k', 50_000)).toBe('t');
    expect(cache.get('k', 55_000)).toBeUndefined();
  });
});

describe('bearer token flow', () => {
  it('gets an anonymous token, retries once, then sends it up front', async () => {
    const registry = await harness.registry({ auth: { kind: 'bearer', service: 'fake.svc' } });
    const image = pushImage(registry, 'library/app', '1');
    const upstream = harness.upstream(registry);

    await upstream.getManifest(app, '1');
    const tokenRequests = registry.requestsTo('/token');
    expect(tokenRequests).toHaveLength(1);
    expect(tokenRequests[0]?.headers.authorization).toBeUndefined();
    expect(tokenRequests[0]?.query.get('service')).toBe('fake.svc');
    expect(tokenRequests[0]?.query.get('scope')).toBe('repository:library/app:pull');
    expect(registry.count('/v2/library/app/manifests/1')).toBe(2);

    // Same scope: the cached token goes with the first request, no 401 round trip.
    await upstream.headManifest(app, '1');
    const layer = image.layers[0]!;
    const blob = await upstream.getBlob(app, { digest: layer.digest, size: layer.size });
    expect((await readAll(blob)).equals(layer.bytes)).toBe(true);
    expect(registry.count('/token')).toBe(1);
    expect(registry.count('/v2/library/app/manifests/1')).toBe(3);
    expect(registry.count(registry.blobPath('library/app', layer.digest))).toBe(1);
  });

  it('asks once for concurrent requests in the same scope', async () => {
    const registry = await harness.registry({ auth: { kind: 'bearer' } });
    pushImage(registry, 'library/app', '1');
    const upstream = harness.upstream(registry);
    await upstream.getManifest(app, '1');
    const blobs = Array.from({ length: 6 }, () => makeBlob(1000));
    const digests = blobs.map((bytes) => registry.addBlob(bytes));
    await Promise.all(
      digests.map(async (digest) =>
        readAll(await upstream.getBlob(repoOf('library/other'), { digest, size: 1000 })),
      ),
    );
    expect(registry.count('/token')).toBe(2);
  });

  it('caches per scope and fetches a new token after expiry', async () => {
    const registry = await harness.registry({ auth: { kind: 'bearer', expiresIn: 300 } });
    pushImage(registry, 'library/app', '1');
    pushImage(registry, 'library/other', '1');
    const clock = new ManualClock();
    const upstream = harness.upstream(registry, { clock });

    await upstream.getManifest(app, '1');
    clock.advance(200_000);
    await upstream.getManifest(app, '1');
    expect(registry.count('/token')).toBe(1);

    await upstream.getManifest(repoOf('library/other'), '1');
    expect(registry.count('/token')).toBe(2);
    expect(registry.requestsTo('/token')[1]?.query.get('scope')).toBe(
      'repository:library/other:pull',
    );

    clock.advance(101_000);
    await upstream.getManifest(app, '1');
    expect(registry.count('/token')).toBe(3);
  });

  it('defaults expires_in to 60 s and accepts access_token', async () => {
    const registry = await harness.registry({
      auth: { kind: 'bearer', tokenField: 'access_token' },
    });
    pushImage(registry, 'library/app', '1');
    const clock = new ManualClock();
    const upstream = harness.upstream(registry, { clock });
    await upstream.getManifest(app, '1');
    clock.advance(45_000);
    await upstream.getManifest(app, '1');
    expect(registry.count('/token')).toBe(1);
    clock.advance(16_000);
    await upstream.getManifest(app, '1');
    expect(registry.count('/token')).toBe(2);
  });

  it('sends configured credentials to the realm', async () => {
    const registry = await harness.registry({ auth: { kind: 'bearer', credentials: creds } });
    pushImage(registry, 'library/app', '1');
    const upstream = harness.upstream(registry, { credentials: new Map([[REGISTRY, creds]]) });
    await upstream.getManifest(app, '1');
    expect(registry.requestsTo('/token')[0]?.headers.authorization).toBe(
      basic(creds.username, creds.password),
    );
    // The password goes to the token service only, never to the registry itself.
    for (const request of registry.requestsTo('/v2/library/app/manifests/1')) {
      expect(request.headers.authorization ?? '').not.toMatch(/^Basic/);
    }
  });

  it('fails clearly, without leaking the password, when the realm refuses credentials', async () => {
    const registry = await harness.registry({ auth: { kind: 'bearer', credentials: creds } });
    pushImage(registry, 'library/app', '1');
    const wrong = { username: 'ci-bot', password: 'wrong-password' };
    const upstream = harness.upstream(registry, { credentials: new Map([[REGISTRY, wrong]]) });
    const error = await rejection(upstream.getManifest(app, '1'));
    expect(error.code).toBe('UNAUTHORIZED');
    expect(error.message).toContain(`authentication to ${REGISTRY} failed`);
    expect(error.message).not.toContain('wrong-password');
    expect(error.message).not.toContain(Buffer.from('ci-bot:wrong-password').toString('base64'));
  });

  it('fetches a fresh token when the registry refuses the cached one', async () => {
    const registry = await harness.registry({ auth: { kind: 'bearer' } });
    pushImage(registry, 'library/app', '1');
    const upstream = harness.upstream(registry);
    await upstream.getManifest(app, '1');
    registry.revokeTokens();
    await upstream.getManifest(app, '1');
    expect(registry.count('/token')).toBe(2);
  });

  it('reports a registry that still refuses after auth as pull access denied', async () => {
    const registry = await harness.registry({ auth: { kind: 'bearer' } });
    pushImage(registry, 'library/app', '1');
    registry.inject('/v2/library/app/manifests/1', {
      kind: 'status',
      status: 401,
      body: JSON.stringify({
        errors: [{ code: 'DENIED', message: 'requested access to the resource is denied' }],
      }),
    });
    const error = await rejection(harness.upstream(registry).getManifest(app, '1'));
    expect(error.code).toBe('NOT_FOUND');
    expect(error.message).toBe(
      `pull access denied for ${REGISTRY}/library/app, repository does not exist or may require 'docker login': denied: requested access to the resource is denied`,
    );
  });

  it('refuses a token realm on a link-local address', async () => {
    const registry = await harness.registry();
    pushImage(registry, 'library/app', '1');
    registry.inject('/v2/library/app/manifests/1', {
      kind: 'status',
      status: 401,
      headers: { 'www-authenticate': 'Bearer realm="http://169.254.169.254/token"' },
    });
    const error = await rejection(harness.upstream(registry).getManifest(app, '1'));
    expect(error.message).toContain('refusing token realm');
  });
});

describe('basic auth', () => {
  it('answers the Basic challenge with the credentials and then sends them up front', async () => {
    const registry = await harness.registry({ auth: { kind: 'basic', ...creds } });
    pushImage(registry, 'library/app', '1');
    const upstream = harness.upstream(registry, { credentials: new Map([[REGISTRY, creds]]) });
    await upstream.getManifest(app, '1');
    await upstream.getManifest(app, '1');
    const requests = registry.requestsTo('/v2/library/app/manifests/1');
    expect(requests.map((r) => r.headers.authorization)).toEqual([
      undefined,
      basic(creds.username, creds.password),
      basic(creds.username, creds.password),
    ]);
  });

  it('says credentials are missing when none are configured', async () => {
    const registry = await harness.registry({ auth: { kind: 'basic', ...creds } });
    pushImage(registry, 'library/app', '1');
    const error = await rejection(harness.upstream(registry).getManifest(app, '1'));
    expect(error.code).toBe('UNAUTHORIZED');
    expect(error.message).toContain('none are configured');
  });
});
