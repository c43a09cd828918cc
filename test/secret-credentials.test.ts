import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { SecretCredentials } from '../lib/adapters/secret-credentials.ts';
import { composeAws } from '../lib/composition.ts';
import { parseAwsSdkSettings } from '../lib/config/aws-sdk.ts';
import { ConfigError, parseServeArgs } from '../lib/config.ts';
import { basic, pushImage } from './support/fake-registry.ts';
import { SecretsManagerLocal } from './support/secrets-manager-local.ts';
import {
  Harness,
  ManualClock,
  REGISTRY,
  readAll,
  rejection,
  repoOf,
} from './support/upstream-harness.ts';

// Upstream credentials from a Secrets Manager secret, read by the real SDK client from a local
// stand-in and used by the real HttpUpstream against fake registries that demand them.

const SECRET = 'image-cache/registry';
const app = repoOf('library/app');
const first = { username: 'ci-bot', password: 'first-s3cret' };
const second = { username: 'ci-bot', password: 'second-s3cret' };

function dockerConfig(credentials: { username: string; password: string }, registry = REGISTRY) {
  const auth = Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64');
  return JSON.stringify({ auths: { [registry]: { auth } } });
}

let secrets: SecretsManagerLocal;
const harness = new Harness();
const opened: SecretCredentials[] = [];
const logged: string[] = [];

beforeAll(async () => {
  secrets = await SecretsManagerLocal.start();
  // The SDK reads its settings from the process, as in a Lambda function.
  vi.stubEnv('AWS_ENDPOINT_URL_SECRETS_MANAGER', secrets.endpoint);
  vi.stubEnv('AWS_REGION', 'us-east-1');
  vi.stubEnv('AWS_ACCESS_KEY_ID', 'local');
  vi.stubEnv('AWS_SECRET_ACCESS_KEY', 'local');
});
afterAll(async () => {
  vi.unstubAllEnvs();
  await secrets.close();
});
afterEach(async () => {
  for (const source of opened.splice(0)) source.close();
  logged.length = 0;
  secrets.calls.length = 0;
  await harness.close();
});

async function open(secretId = SECRET, clock = new ManualClock()): Promise<SecretCredentials> {
  const source = await SecretCredentials.open({
    secretId,
    clock,
    sdk: parseAwsSdkSettings(process.env),
    log: (message) => logged.push(message),
  });
  opened.push(source);
  return source;
}

describe('credentials from the secret', () => {
  it('let a pull through token auth succeed, the password going to the token service only', async () => {
    secrets.put(SECRET, dockerConfig(first));
    const registry = await harness.registry({ auth: { kind: 'bearer', credentials: first } });
    const image = pushImage(registry, 'library/app', '1');
    const upstream = harness.upstream(registry, { credentials: await open() });

    await upstream.getManifest(app, '1');
    const layer = image.layers[0]!;
    const blob = await upstream.getBlob(app, { digest: layer.digest, size: layer.size });
    expect((await readAll(blob)).equals(layer.bytes)).toBe(true);

    expect(registry.requestsTo('/token').map((r) => r.headers.authorization)).toEqual([
      basic(first.username, first.password),
    ]);
    for (const request of registry.requests.filter((r) => r.path.startsWith('/v2/'))) {
      expect(request.headers.authorization ?? '').not.toMatch(/^Basic/);
    }
    expect(secrets.reads()).toBe(1);
  });

  it('are not sent to a registry the secret does not name', async () => {
    secrets.put(SECRET, dockerConfig(first));
    const named = await harness.registry({ auth: { kind: 'bearer', credentials: first } });
    const other = await harness.registry({ auth: { kind: 'bearer' } });
    pushImage(named, 'library/app', '1');
    pushImage(other, 'library/app', '1');
    const upstream = harness.upstream(named, {
      registries: new Map([
        [REGISTRY, named.url],
        ['other.test', other.url],
      ]),
      credentials: await open(),
    });

    await upstream.getManifest(app, '1');
    await upstream.getManifest(repoOf('library/app', 'other.test'), '1');

    expect(named.requestsTo('/token')[0]?.headers.authorization).toBe(
      basic(first.username, first.password),
    );
    expect(other.requests.length).toBeGreaterThan(0);
    for (const request of other.requests) {
      expect(request.headers.authorization ?? '').not.toMatch(/^Basic/);
      expect(JSON.stringify(request.headers)).not.toContain(first.password);
    }
  });
});

describe('rotation', () => {
  /**
   * A registry demanding `demanded`, an upstream reading the secret (holding `first`) on a
   * clock the test moves, and `rotate()`, which moves the registry and the secret to `second`.
   */
  async function rotating(kind: 'bearer' | 'basic', demanded = first) {
    secrets.put(SECRET, dockerConfig(first));
    const bearer = { kind: 'bearer' as const, credentials: { ...demanded } };
    const basicAuth = { kind: 'basic' as const, ...demanded };
    const registry = await harness.registry({ auth: kind === 'bearer' ? bearer : basicAuth });
    pushImage(registry, 'library/app', '1');
    const clock = new ManualClock();
    const upstream = harness.upstream(registry, { credentials: await open(SECRET, clock), clock });
    const rotate = () => {
      secrets.put(SECRET, dockerConfig(second));
      bearer.credentials = { ...second };
      Object.assign(basicAuth, second);
    };
    return { registry, clock, upstream, rotate };
  }

  it('re-reads the secret when the token service refuses the credentials', async () => {
    const { registry, clock, upstream, rotate } = await rotating('bearer');
    await upstream.getManifest(app, '1');

    // The cached token dies with the old password.
    rotate();
    registry.revokeTokens();
    clock.advance(15_000);
    await upstream.getManifest(app, '1');

    expect(registry.requestsTo('/token').map((r) => r.headers.authorization)).toEqual([
      basic(first.username, first.password),
      basic(first.username, first.password),
      basic(second.username, second.password),
    ]);
    expect(secrets.reads()).toBe(2);
  });

  it('re-reads the secret when a Basic registry refuses the credentials', async () => {
    const { registry, clock, upstream, rotate } = await rotating('basic');
    await upstream.getManifest(app, '1');

    rotate();
    clock.advance(15_000);
    await upstream.getManifest(app, '1');

    const sent = registry
      .requestsTo('/v2/library/app/manifests/1')
      .map((r) => r.headers.authorization);
    expect(sent.at(-1)).toBe(basic(second.username, second.password));
    expect(secrets.reads()).toBe(2);
  });

  it('re-reads a copy older than five minutes on the next pull that needs credentials', async () => {
    const { registry, clock, upstream, rotate } = await rotating('bearer');
    await upstream.getManifest(app, '1');

    rotate();
    clock.advance(5 * 60_000);
    expect(secrets.reads()).toBe(1); // lazily: nothing reads it until a pull asks
    await upstream.getManifest(app, '1');

    expect(secrets.reads()).toBe(2);
    // The new password went out first time: no refusal was needed to find it.
    expect(registry.requestsTo('/token').map((r) => r.headers.authorization)).toEqual([
      basic(first.username, first.password),
      basic(second.username, second.password),
    ]);
  });

  it('reports the registries it holds credentials for as the secret changes, re-read when old', async () => {
    secrets.put(SECRET, JSON.stringify({ auths: {} }));
    const clock = new ManualClock();
    const source = await open(SECRET, clock);
    expect([...(await source.configuredRegistries())]).toEqual([]);

    secrets.put(SECRET, dockerConfig(first, 'https://index.docker.io/v1/'));
    clock.advance(5 * 60_000 - 1);
    expect([...(await source.configuredRegistries())]).toEqual([]); // still the fresh copy
    clock.advance(1);
    expect([...(await source.configuredRegistries())]).toEqual(['docker.io']);
    expect(secrets.reads()).toBe(2);
  });

  it('keeps the last good credentials and logs when a re-read fails', async () => {
    const { clock, upstream } = await rotating('bearer');

    secrets.deny(SECRET);
    clock.advance(6 * 60_000);
    try {
      await upstream.getManifest(app, '1');
    } finally {
      secrets.deny(SECRET, false);
    }

    expect(secrets.reads()).toBe(2);
    expect(logged).toHaveLength(1);
    expect(logged[0]).toMatch(
      /IMAGE_CACHE_REGISTRY_SECRET: reading secret image-cache\/registry: access denied/,
    );
    expect(logged[0]).toContain('secretsmanager:GetSecretValue');
    expect(logged[0]).toContain(
      'keeping the registry credentials read at 2024-01-01T00:00:00.000Z',
    );
  });

  it('does not read again for every refusal of credentials that are simply wrong', async () => {
    const { clock, upstream } = await rotating('bearer', second);

    for (let pull = 0; pull < 3; pull++) {
      const error = await rejection(upstream.getManifest(app, '1'));
      expect(error.code).toBe('UNAUTHORIZED');
      expect(error.message).not.toContain(first.password);
    }
    expect(secrets.reads()).toBe(1);

    clock.advance(15_000);
    await rejection(upstream.getManifest(app, '1'));
    expect(secrets.reads()).toBe(2);
  });
});

describe('failures at start', () => {
  it('names a missing secret clearly', async () => {
    const error = await rejection(open('image-cache/missing'));
    expect(error).toBeInstanceOf(ConfigError);
    expect(error.message).toMatch(
      /^IMAGE_CACHE_REGISTRY_SECRET: reading secret image-cache\/missing: no such secret/,
    );
  });

  it('stops composeAws before any other client is built', async () => {
    const config = parseServeArgs(['--backend', 'aws'], {
      IMAGE_CACHE_BUCKET: 'image-cache-test',
      IMAGE_CACHE_TABLE: 'image-cache-test',
      IMAGE_CACHE_REGISTRY_SECRET: 'image-cache/missing',
    });
    const error = await rejection(composeAws(config));
    expect(error.message).toMatch(/reading secret image-cache\/missing: no such secret/);
  });

  it('says which permission is missing when access is denied', async () => {
    secrets.put('image-cache/denied', dockerConfig(first));
    secrets.deny('image-cache/denied');
    const error = await rejection(open('image-cache/denied'));
    expect(error.message).toContain('access denied');
    expect(error.message).toContain('secretsmanager:GetSecretValue');
  });

  it('asks the region of a secret named by ARN', async () => {
    const arn = secrets.arnOf('image-cache/eu', 'eu-west-1');
    secrets.put('image-cache/eu', dockerConfig(first));
    await open(arn);
    expect(secrets.calls.at(-1)).toMatchObject({ secretId: arn, region: 'eu-west-1' });
  });

  it.each([
    ['broken JSON', '{"auths": {"fake.test": {"auth": "hunter2-Y2ktYm90"', /is not valid JSON/],
    ['JSON that quotes the secret', '{"auths": hunter2 }', /is not valid JSON/],
    [
      'an auth that is not base64',
      JSON.stringify({ auths: { 'fake.test': { auth: 'hunter2!' } } }),
      /auths\["fake.test"\] in secret image-cache\/malformed: "auth" is not valid base64/,
    ],
    [
      'a username without password',
      JSON.stringify({ auths: { 'fake.test': { username: 'hunter2' } } }),
      /needs both "username" and "password"/,
    ],
    ['not an object', JSON.stringify(['hunter2']), /must hold a JSON object with "auths"/],
  ])('refuses %s without printing it', async (_name, value, message) => {
    secrets.put('image-cache/malformed', value);
    const error = await rejection(open('image-cache/malformed'));
    expect(error).toBeInstanceOf(ConfigError);
    expect(error.message).toMatch(/^IMAGE_CACHE_REGISTRY_SECRET: /);
    expect(error.message).toMatch(message);
    expect(error.message).not.toContain('hunter2');
  });

  it('refuses a binary secret', async () => {
    secrets.putBinary('image-cache/binary', Buffer.from(dockerConfig(first)));
    const error = await rejection(open('image-cache/binary'));
    expect(error.message).toContain('has no SecretString');
  });

  it('accepts the empty auths a new deployment starts with', async () => {
    secrets.put('image-cache/empty', JSON.stringify({ auths: {} }));
    const source = await open('image-cache/empty');
    expect(await source.get(REGISTRY)).toBeUndefined();
  });
});
