/**
 * GET /cache/registries says which allow-listed registries are pulled anonymously and where
 * their credentials come from, never the credentials; the server warns once at start when
 * Docker Hub has none. Both backends: the embedded one with and without IMAGE_CACHE_AUTH_FILE,
 * the AWS one with its registry secret served by a local Secrets Manager stand-in.
 */
import { writeFile } from 'node:fs/promises';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { awsEmulators, functionEnvironment, stopAwsEmulators } from './support/aws-emulators.ts';
import { type CacheServer, startCacheServer } from './support/cache-server.ts';
import { SecretsManagerLocal } from './support/secrets-manager-local.ts';
import { tempDirs } from './support/tmp.ts';

const temps = tempDirs('auth-file');
afterAll(stopAwsEmulators);
afterAll(temps.cleanupAll);

// Nothing is pulled: the URLs only have to pass the allow-list's checks.
const REGISTRIES = 'docker.io=https://registry-1.docker.io,ghcr.io=https://ghcr.io';
const HUB_PASSWORD = 'dckr_pat_not-a-real-token';
const dockerConfig = JSON.stringify({
  auths: {
    'https://index.docker.io/v1/': {
      auth: Buffer.from(`hub-user:${HUB_PASSWORD}`).toString('base64'),
    },
  },
});

let server: CacheServer | undefined;
let warnings: string[] = [];

beforeAll(() => {
  vi.spyOn(console, 'warn').mockImplementation((message: unknown) => {
    warnings.push(String(message));
  });
});
afterEach(async () => {
  await server?.close();
  server = undefined;
  warnings = [];
});
afterAll(() => {
  vi.restoreAllMocks();
});

async function registriesOf(started: CacheServer): Promise<Record<string, unknown>[]> {
  const response = await fetch(`${started.url}/cache/registries`);
  expect(response.status).toBe(200);
  const text = await response.text();
  expect(text).not.toContain(HUB_PASSWORD);
  expect(text).not.toContain('hub-user');
  return JSON.parse(text) as Record<string, unknown>[];
}

const hubWarning = expect.stringMatching(
  /^docker\.io is pulled anonymously: Docker Hub limits anonymous pulls per source IP address.*429/,
);
const startWarnings = () => warnings.filter((w) => w.includes('docker.io is pulled anonymously'));

describe('embedded backend', () => {
  it('without an auth file: every registry anonymous, Docker Hub with a warning, logged once at start', async () => {
    server = await startCacheServer({ registries: REGISTRIES });

    expect(await registriesOf(server)).toEqual([
      {
        Name: 'docker.io',
        URL: 'https://registry-1.docker.io',
        RateLimit: null,
        Credentials: 'anonymous',
        CredentialsFrom: 'auth-file',
        Warning: hubWarning,
      },
      {
        Name: 'ghcr.io',
        URL: 'https://ghcr.io',
        RateLimit: null,
        Credentials: 'anonymous',
        CredentialsFrom: 'auth-file',
      },
    ]);
    expect(startWarnings()).toEqual([expect.stringMatching(/IMAGE_CACHE_AUTH_FILE/)]);
  });

  it('with Docker Hub in the auth file: configured, no warning, nothing logged', async () => {
    const authFile = (await temps.create()).file('config.json');
    await writeFile(authFile, dockerConfig);
    server = await startCacheServer({
      registries: REGISTRIES,
      env: { IMAGE_CACHE_AUTH_FILE: authFile },
    });

    const [hub, ghcr] = await registriesOf(server);
    expect(hub).toEqual({
      Name: 'docker.io',
      URL: 'https://registry-1.docker.io',
      RateLimit: null,
      Credentials: 'configured',
      CredentialsFrom: 'auth-file',
    });
    expect(ghcr).toMatchObject({ Name: 'ghcr.io', Credentials: 'anonymous' });
    expect(ghcr).not.toHaveProperty('Warning');
    expect(startWarnings()).toEqual([]);
  });

  it('does not warn when Docker Hub is not on the allow-list', async () => {
    server = await startCacheServer({ registries: 'ghcr.io=https://ghcr.io' });
    expect(await registriesOf(server)).toEqual([
      expect.objectContaining({ Name: 'ghcr.io', Credentials: 'anonymous' }),
    ]);
    expect(startWarnings()).toEqual([]);
  });

  it('does not warn when docker.io is a registry standing in for Docker Hub', async () => {
    server = await startCacheServer({ registries: 'docker.io=http://127.0.0.1:5000' });
    const [hub] = await registriesOf(server);
    expect(hub).toMatchObject({ Name: 'docker.io', Credentials: 'anonymous' });
    expect(hub).not.toHaveProperty('Warning');
    expect(startWarnings()).toEqual([]);
  });
});

describe('aws backend', () => {
  let secrets: SecretsManagerLocal;
  beforeAll(async () => {
    secrets = await SecretsManagerLocal.start();
  });
  afterAll(async () => {
    await secrets.close();
  });

  const withSecret = (name: string) =>
    startCacheServer({
      registries: REGISTRIES,
      backend: 'aws',
      env: {
        IMAGE_CACHE_REGISTRY_SECRET: name,
        AWS_ENDPOINT_URL_SECRETS_MANAGER: secrets.endpoint,
      },
    });

  it('with the secret holding credentials for docker.io only', async () => {
    secrets.put('image-cache/hub', dockerConfig);
    server = await withSecret('image-cache/hub');

    expect(await registriesOf(server)).toEqual([
      expect.objectContaining({
        Name: 'docker.io',
        Credentials: 'configured',
        CredentialsFrom: 'secret',
      }),
      expect.objectContaining({
        Name: 'ghcr.io',
        Credentials: 'anonymous',
        CredentialsFrom: 'secret',
      }),
    ]);
    expect(startWarnings()).toEqual([]);
  });

  it('with the empty secret a new stack deploys: Docker Hub anonymous, pointing at the secret', async () => {
    secrets.put('image-cache/empty', JSON.stringify({ auths: {} }));
    server = await withSecret('image-cache/empty');

    const [hub] = await registriesOf(server);
    expect(hub).toMatchObject({
      Credentials: 'anonymous',
      CredentialsFrom: 'secret',
      Warning: expect.stringMatching(/registry secret \(IMAGE_CACHE_REGISTRY_SECRET/),
    });
    expect(startWarnings()).toEqual([hub?.Warning && `image-cache: warning: ${hub.Warning}`]);
  });

  it('on Lambda: logged once per container, however many invocations build on it', async () => {
    secrets.put('image-cache/lambda', JSON.stringify({ auths: {} }));
    const emulators = await awsEmulators();
    // The SDK's clients read their credentials from the process, as in a function.
    Object.assign(process.env, emulators.env);
    const env = {
      ...functionEnvironment(emulators),
      IMAGE_CACHE_REGISTRIES: REGISTRIES,
      IMAGE_CACHE_REGISTRY_SECRET: 'image-cache/lambda',
      AWS_ENDPOINT_URL_SECRETS_MANAGER: secrets.endpoint,
    };
    const { lambdaRuntime } = await import('../lib/lambda/runtime.ts');
    const [runtime] = await Promise.all([lambdaRuntime(env), lambdaRuntime(env)]);
    await lambdaRuntime(env);
    try {
      expect(startWarnings()).toEqual([
        expect.stringMatching(/^image-cache: warning: docker\.io is pulled anonymously.*secret/),
      ]);
    } finally {
      await runtime.composition.close();
    }
  });
});
