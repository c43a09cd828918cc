import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { chmod, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ConfigError,
  loadAuthFile,
  parseAuthConfig,
  parseRegistries,
  parseServeArgs,
  type RegistryCredentials,
} from '../lib/config.ts';
import { type TempDir, tempDir } from './support/tmp.ts';

const b64 = (text: string) => Buffer.from(text).toString('base64');

function asObject(map: Map<string, URL>): Record<string, string> {
  return Object.fromEntries([...map].map(([name, url]) => [name, url.href]));
}

describe('parseRegistries', () => {
  const defaults = {
    'docker.io': 'https://registry-1.docker.io/',
    'ghcr.io': 'https://ghcr.io/',
    'quay.io': 'https://quay.io/',
    'registry.k8s.io': 'https://registry.k8s.io/',
    'gcr.io': 'https://gcr.io/',
    'mcr.microsoft.com': 'https://mcr.microsoft.com/',
    'public.ecr.aws': 'https://public.ecr.aws/',
  };
  const valid: [string | undefined, Record<string, string>][] = [
    [undefined, defaults],
    ['', defaults],
    ['  ', defaults],
    [
      'docker.io=https://registry-1.docker.io,ghcr.io=https://ghcr.io',
      { 'docker.io': 'https://registry-1.docker.io/', 'ghcr.io': 'https://ghcr.io/' },
    ],
    [' docker.io = https://mirror.example.com/ , ', { 'docker.io': 'https://mirror.example.com/' }],
    [
      'index.docker.io=https://registry-1.docker.io',
      { 'docker.io': 'https://registry-1.docker.io/' },
    ],
    ['localhost:5000=http://127.0.0.1:5000', { 'localhost:5000': 'http://127.0.0.1:5000/' }],
    ['localhost=http://localhost:8080', { localhost: 'http://localhost:8080/' }],
    ['[::1]:5000=http://[::1]:5000', { '[::1]:5000': 'http://[::1]:5000/' }],
    [
      'Registry.Example.com=HTTPS://registry.example.com',
      { 'registry.example.com': 'https://registry.example.com/' },
    ],
  ];
  it.each(valid)('%j', (value, expected) => {
    expect(asObject(parseRegistries(value))).toEqual(expected);
  });

  const invalid: [string, RegExp][] = [
    ['docker.io', /entry "docker.io" must be name=url/],
    [
      'docker.io=https://a.example,docker.io=https://b.example',
      /docker.io is listed more than once/,
    ],
    [
      'docker.io=https://a.example,index.docker.io=https://b.example',
      /docker.io is listed more than once/,
    ],
    ['myregistry=https://myregistry', /"myregistry" is not a registry host/],
    ['foo_bar.com=https://foo.example', /"foo_bar.com" is not a registry host/],
    ['=https://a.example', /"" is not a registry host/],
    ['ghcr.io=ghcr.io', /url for ghcr.io must start with https:\/\//],
    ['ghcr.io=', /url for ghcr.io must start with https:\/\//],
    ['ghcr.io=ftp://ghcr.io', /must start with https:\/\//],
    ['ghcr.io=file:///etc/passwd', /must start with https:\/\//],
    ['ghcr.io=https://', /is not a valid URL/],
    ['ghcr.io=https://user:pw@ghcr.io', /must not contain credentials/],
    ['ghcr.io=https://user@ghcr.io', /must not contain credentials/],
    ['ghcr.io=https://ghcr.io/v2', /must be only a scheme and host/],
    ['ghcr.io=https://ghcr.io/?x=1', /must be only a scheme and host/],
    ['ghcr.io=https://ghcr.io/#x', /must be only a scheme and host/],
  ];
  it.each(invalid)('%j fails', (value, message) => {
    expect(() => parseRegistries(value)).toThrow(ConfigError);
    expect(() => parseRegistries(value)).toThrow(message);
    expect(() => parseRegistries(value)).toThrow(/^IMAGE_CACHE_REGISTRIES: /);
  });
});

describe('loadAuthFile', () => {
  let dir: TempDir;
  let counter = 0;
  beforeAll(async () => {
    dir = await tempDir('config');
  });
  afterAll(() => dir.cleanup());

  async function authFile(content: unknown): Promise<string> {
    const path = dir.file(`auth-${counter++}.json`);
    await writeFile(path, typeof content === 'string' ? content : JSON.stringify(content));
    return path;
  }

  it.each([undefined, ''])('no file (%j) means no credentials', (path) => {
    expect(loadAuthFile(path).size).toBe(0);
  });

  const valid: [string, unknown, Record<string, RegistryCredentials>][] = [
    [
      'Docker Hub legacy key, auth field',
      { auths: { 'https://index.docker.io/v1/': { auth: b64('alice:s3cret') } } },
      { 'docker.io': { username: 'alice', password: 's3cret' } },
    ],
    [
      'password containing colons',
      { auths: { 'ghcr.io': { auth: b64('bob:a:b:c') } } },
      { 'ghcr.io': { username: 'bob', password: 'a:b:c' } },
    ],
    [
      'username and password fields, url key with path',
      { auths: { 'https://registry.example.com:5000/v2/': { username: 'u', password: 'p' } } },
      { 'registry.example.com:5000': { username: 'u', password: 'p' } },
    ],
    [
      'identity token',
      { auths: { 'quay.io': { identitytoken: 'tok' } } },
      { 'quay.io': { username: '<token>', password: '', identityToken: 'tok' } },
    ],
    [
      'auth plus identity token',
      { auths: { 'quay.io': { auth: b64('u:'), identitytoken: 'tok' } } },
      { 'quay.io': { username: 'u', password: '', identityToken: 'tok' } },
    ],
    [
      'entries left empty by a credential helper are skipped',
      {
        auths: { 'https://index.docker.io/v1/': {}, 'ghcr.io': { auth: b64('x:y') } },
        credsStore: 'desktop',
      },
      { 'ghcr.io': { username: 'x', password: 'y' } },
    ],
    [
      'same credentials under two Hub keys',
      {
        auths: {
          'https://index.docker.io/v1/': { auth: b64('a:b') },
          'docker.io': { username: 'a', password: 'b' },
          'registry-1.docker.io': { auth: b64('a:b') },
        },
      },
      { 'docker.io': { username: 'a', password: 'b' } },
    ],
    ['no auths section', { credsStore: 'desktop' }, {}],
    [
      'http key, uppercase host',
      { auths: { 'http://LOCALHOST:5000': { auth: b64('l:p') } } },
      { 'localhost:5000': { username: 'l', password: 'p' } },
    ],
  ];
  it.each(valid)('%s', async (_name, content, expected) => {
    const loaded = loadAuthFile(await authFile(content));
    expect(Object.fromEntries(loaded)).toEqual(expected);
  });

  const invalid: [string, unknown, RegExp][] = [
    ['broken JSON', '{"auths": ', /is not valid JSON/],
    ['a JSON array', '[]', /must hold a JSON object/],
    ['auths not an object', { auths: [] }, /"auths" in .* must be an object/],
    [
      'entry not an object',
      { auths: { 'ghcr.io': 'x' } },
      /auths\["ghcr.io"\] in .* must be an object/,
    ],
    [
      'auth not base64',
      { auths: { 'ghcr.io': { auth: 'not base64!' } } },
      /auths\["ghcr.io"\].*"auth" is not valid base64/,
    ],
    [
      'auth without colon',
      { auths: { 'ghcr.io': { auth: b64('justauser') } } },
      /base64 of username:password/,
    ],
    [
      'auth with empty user',
      { auths: { 'ghcr.io': { auth: b64(':pw') } } },
      /base64 of username:password/,
    ],
    ['auth not a string', { auths: { 'ghcr.io': { auth: 42 } } }, /"auth" must be a string/],
    [
      'username without password',
      { auths: { 'ghcr.io': { username: 'u' } } },
      /needs both "username" and "password"/,
    ],
    [
      'key that is no host',
      { auths: { myregistry: { auth: b64('a:b') } } },
      /"myregistry" is not a registry host/,
    ],
    [
      'different credentials under two Hub keys',
      {
        auths: {
          'https://index.docker.io/v1/': { auth: b64('a:b') },
          'docker.io': { auth: b64('a:c') },
        },
      },
      /both name docker.io with different credentials/,
    ],
  ];
  it.each(invalid)('%s fails', async (_name, content, message) => {
    const path = await authFile(content);
    expect(() => loadAuthFile(path)).toThrow(ConfigError);
    expect(() => loadAuthFile(path)).toThrow(message);
    expect(() => loadAuthFile(path)).toThrow(/^IMAGE_CACHE_AUTH_FILE: /);
  });

  it('never puts the secret in a message', async () => {
    const path = await authFile({
      auths: { 'ghcr.io': { username: 'u', password: 'hunter2' }, bad: { auth: b64('u:hunter2') } },
    });
    expect(() => loadAuthFile(path)).toThrow(ConfigError);
    expect(() => loadAuthFile(path)).not.toThrow(/hunter2/);
  });

  it('reports a missing file', () => {
    expect(() => loadAuthFile(dir.file('missing.json'))).toThrow(
      /IMAGE_CACHE_AUTH_FILE: cannot read .*missing.json/,
    );
  });

  it('reports an unreadable file', async () => {
    const path = await authFile({ auths: {} });
    await chmod(path, 0o000);
    // Root reads a mode-000 file, so as root the read runs in a child as nobody; the folder is
    // opened up so the only thing refused is the file itself.
    await chmod(dirname(path), 0o755);
    expect(readAuthFileAsUnprivileged(path)).toMatch(/cannot read .*EACCES/);
  });
});

/** loadAuthFile(path) in a child node, as `nobody` when we are root: its error message. */
function readAuthFileAsUnprivileged(path: string): string {
  const config = new URL('../lib/config.ts', import.meta.url).href;
  const script = `import { loadAuthFile } from ${JSON.stringify(config)};
try { loadAuthFile(process.argv[1]); console.log('read it'); } catch (e) { console.log(e.message); }`;
  const asNobody = process.getuid?.() === 0 ? { uid: NOBODY, gid: NOBODY } : {};
  const child = spawnSync(
    process.execPath,
    ['--import', 'tsx', '--input-type=module', '-e', script, path],
    { encoding: 'utf8', ...asNobody },
  );
  expect(child.stderr).toBe('');
  return child.stdout;
}

/** The uid and gid of `nobody` on Debian. */
const NOBODY = 65534;

describe('parseServeArgs', () => {
  it('reads the load limits once, into the settings the routes and jobs use', () => {
    const config = parseServeArgs([], {
      IMAGE_CACHE_MAX_LOAD_BYTES: '1000',
      IMAGE_CACHE_MAX_LOAD_RATIO: '7',
    });
    expect(config.loadLimits).toMatchObject({ maxBodyBytes: 1000, maxRatio: 7 });
    // The expanded cap follows the body cap up, never below the default.
    expect(config.loadLimits.maxExpandedBytes).toBeGreaterThanOrEqual(1000);
    expect(parseServeArgs([], {}).loadLimits.maxBodyBytes).toBe(64 * 1024 ** 3);
  });

  it('reads the AWS SDK settings with the aws backend: endpoints per service, region, part size', () => {
    const config = parseServeArgs(['--backend', 'aws'], {
      IMAGE_CACHE_BUCKET: 'image-cache-bucket',
      IMAGE_CACHE_TABLE: 'image-cache',
      AWS_ENDPOINT_URL: 'http://127.0.0.1:9000',
      AWS_ENDPOINT_URL_DYNAMODB: ' http://127.0.0.1:8000 ',
      AWS_DEFAULT_REGION: 'eu-west-1',
      IMAGE_CACHE_UPLOAD_PART_SIZE: '8MiB',
      AWS_LAMBDA_FUNCTION_NAME: 'image-cache-api',
    });
    expect(config.aws?.sdk.endpoints).toEqual({
      s3: 'http://127.0.0.1:9000',
      dynamodb: 'http://127.0.0.1:8000',
      lambda: 'http://127.0.0.1:9000',
      secretsmanager: 'http://127.0.0.1:9000',
      sqs: 'http://127.0.0.1:9000',
    });
    expect(config.aws?.sdk.region).toBe('eu-west-1');
    expect(config.aws?.uploadPartSize).toBe(8 * 1024 * 1024);
    expect(config.lambdaFunction).toBe('image-cache-api');
  });

  it.each([
    ['lots', /IMAGE_CACHE_UPLOAD_PART_SIZE: .*lots/],
    ['1MiB', /IMAGE_CACHE_UPLOAD_PART_SIZE: "1MiB" must be from 5MiB to 5GiB/],
    ['6GiB', /must be from 5MiB to 5GiB/],
  ])('refuses IMAGE_CACHE_UPLOAD_PART_SIZE=%s at start', (value, message) => {
    const env = {
      IMAGE_CACHE_BUCKET: 'image-cache-bucket',
      IMAGE_CACHE_TABLE: 'image-cache',
      IMAGE_CACHE_UPLOAD_PART_SIZE: value,
    };
    expect(() => parseServeArgs(['--backend', 'aws'], env)).toThrow(message);
  });

  it.each([
    ['IMAGE_CACHE_MIRROR_REDIRECT', 'maybe'],
    ['IMAGE_CACHE_REQUIRE_AUTH', 'sure'],
  ])('refuses a switch %s that is neither on nor off', (name, value) => {
    expect(() => parseServeArgs([], { [name]: value })).toThrow(
      `${name}: "${value}" must be 1 or 0`,
    );
  });

  it.each([
    ['IMAGE_CACHE_MAX_LOAD_RATIO', 'lots'],
    ['IMAGE_CACHE_MAX_LOAD_BYTES', '-1'],
    ['IMAGE_CACHE_MAX_LOAD_EXPANDED_BYTES', '1.5'],
  ])('refuses a bad %s at start', (name, value) => {
    expect(() => parseServeArgs([], { [name]: value })).toThrow(ConfigError);
    expect(() => parseServeArgs([], { [name]: value })).toThrow(name);
  });

  const defaults = {
    host: '127.0.0.1',
    port: 5115,
    dataDir: resolve('data'),
    tagTtlMs: 5 * 60_000,
    concurrency: 4,
  };
  const valid: [string, string[], NodeJS.ProcessEnv, Partial<typeof defaults>][] = [
    ['defaults', [], {}, {}],
    [
      'every flag',
      [
        '--host',
        '0.0.0.0',
        '--require-auth',
        '--port',
        '8080',
        '--data',
        '/var/cache/images',
        '--tag-ttl',
        '1h30m',
        '--concurrency',
        '8',
      ],
      {},
      {
        host: '0.0.0.0',
        port: 8080,
        dataDir: '/var/cache/images',
        tagTtlMs: 90 * 60_000,
        concurrency: 8,
      },
    ],
    [
      '--flag=value form',
      ['--port=0', '--data=rel/dir'],
      {},
      { port: 0, dataDir: resolve('rel/dir') },
    ],
    [
      'env values',
      [],
      { IMAGE_CACHE_TAG_TTL: '0s', IMAGE_CACHE_CONCURRENCY: '16' },
      { tagTtlMs: 0, concurrency: 16 },
    ],
    [
      'flags win over env',
      ['--tag-ttl', '7d', '--concurrency', '2'],
      { IMAGE_CACHE_TAG_TTL: '1s', IMAGE_CACHE_CONCURRENCY: '9' },
      { tagTtlMs: 7 * 86_400_000, concurrency: 2 },
    ],
    ['empty env means default', [], { IMAGE_CACHE_TAG_TTL: '', IMAGE_CACHE_CONCURRENCY: ' ' }, {}],
    ['IPv6 host', ['--host', '::'], { IMAGE_CACHE_REQUIRE_AUTH: '1' }, { host: '::' }],
  ];
  it.each(valid)('%s', (_name, argv, env, expected) => {
    const config = parseServeArgs(argv, env);
    expect(config).toMatchObject({ ...defaults, ...expected });
  });

  it('reads registries and credentials from env', async () => {
    await using dir = await tempDir('serve');
    const path = dir.file('auth.json');
    await writeFile(path, JSON.stringify({ auths: { 'localhost:5000': { auth: b64('a:b') } } }));
    const config = parseServeArgs([], {
      IMAGE_CACHE_REGISTRIES: 'localhost:5000=http://127.0.0.1:5000',
      IMAGE_CACHE_AUTH_FILE: path,
    });
    expect(asObject(config.registries)).toEqual({ 'localhost:5000': 'http://127.0.0.1:5000/' });
    expect(config.credentials.get('localhost:5000')).toEqual({ username: 'a', password: 'b' });
    expect(parseServeArgs([], {}).registries.get('docker.io')?.href).toBe(
      'https://registry-1.docker.io/',
    );
    expect(parseServeArgs([], {}).credentials.size).toBe(0);
  });

  const invalid: [string, string[], NodeJS.ProcessEnv, RegExp][] = [
    ['unknown flag', ['--verbose'], {}, /serve: Unknown option '--verbose'/],
    ['positional', ['extra'], {}, /serve: .*extra/],
    ['flag without value', ['--port'], {}, /serve: .*--port/],
    [
      'port not a number',
      ['--port', 'http'],
      {},
      /--port: "http" must be a whole number from 0 to 65535/,
    ],
    ['port too large', ['--port', '65536'], {}, /--port: .* from 0 to 65535/],
    ['port negative', ['--port=-1'], {}, /--port: .* from 0 to 65535/],
    ['port fraction', ['--port', '80.5'], {}, /--port/],
    ['empty host', ['--host', ''], {}, /--host must not be empty/],
    ['empty data', ['--data', ''], {}, /--data must not be empty/],
    ['bad ttl flag', ['--tag-ttl', '5'], {}, /--tag-ttl: invalid duration "5"/],
    [
      'bad ttl env',
      [],
      { IMAGE_CACHE_TAG_TTL: 'forever' },
      /IMAGE_CACHE_TAG_TTL: invalid duration "forever"/,
    ],
    [
      'zero concurrency',
      ['--concurrency', '0'],
      {},
      /--concurrency: "0" must be a whole number from 1 to 64/,
    ],
    [
      'huge concurrency env',
      [],
      { IMAGE_CACHE_CONCURRENCY: '1000' },
      /IMAGE_CACHE_CONCURRENCY: "1000" must be/,
    ],
    [
      'bad registries env',
      [],
      { IMAGE_CACHE_REGISTRIES: 'nope' },
      /IMAGE_CACHE_REGISTRIES: entry "nope"/,
    ],
    [
      'bad auth file env',
      [],
      { IMAGE_CACHE_AUTH_FILE: '/nonexistent/auth.json' },
      /IMAGE_CACHE_AUTH_FILE: cannot read/,
    ],
  ];
  it.each(invalid)('%s fails', (_name, argv, env, message) => {
    expect(() => parseServeArgs(argv, env)).toThrow(ConfigError);
    expect(() => parseServeArgs(argv, env)).toThrow(message);
  });
});

describe('IMAGE_CACHE_REGISTRY_SECRET', () => {
  const aws = { IMAGE_CACHE_BUCKET: 'image-cache-bucket', IMAGE_CACHE_TABLE: 'image-cache' };
  const arn = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:image-cache/registry-AbCdEf';

  it.each([
    ['a name', 'image-cache/registry', 'image-cache/registry'],
    ['an ARN', arn, arn],
    [
      'a GovCloud ARN',
      arn.replace('arn:aws:', 'arn:aws-us-gov:'),
      arn.replace('arn:aws:', 'arn:aws-us-gov:'),
    ],
    ['surrounding blanks', '  image-cache/registry ', 'image-cache/registry'],
  ])('takes %s on the aws backend', (_name, value, expected) => {
    const config = parseServeArgs(['--backend', 'aws'], {
      ...aws,
      IMAGE_CACHE_REGISTRY_SECRET: value,
    });
    expect(config.aws?.registrySecret).toBe(expected);
    expect(config.credentials.size).toBe(0);
  });

  it('is absent when unset or empty', () => {
    expect(parseServeArgs(['--backend', 'aws'], aws).aws).not.toHaveProperty('registrySecret');
    const empty = parseServeArgs(['--backend', 'aws'], {
      ...aws,
      IMAGE_CACHE_REGISTRY_SECRET: ' ',
    });
    expect(empty.aws).not.toHaveProperty('registrySecret');
  });

  const invalid: [string, string[], NodeJS.ProcessEnv, RegExp][] = [
    [
      'on the embedded backend',
      [],
      { IMAGE_CACHE_REGISTRY_SECRET: 'image-cache/registry' },
      /IMAGE_CACHE_REGISTRY_SECRET is read by --backend aws only: .*IMAGE_CACHE_AUTH_FILE/,
    ],
    [
      'together with an auth file',
      ['--backend', 'aws'],
      { ...aws, IMAGE_CACHE_REGISTRY_SECRET: 'image-cache/registry', IMAGE_CACHE_AUTH_FILE: '/x' },
      /IMAGE_CACHE_AUTH_FILE and IMAGE_CACHE_REGISTRY_SECRET are both set/,
    ],
    [
      'an ARN of another service',
      ['--backend', 'aws'],
      { ...aws, IMAGE_CACHE_REGISTRY_SECRET: 'arn:aws:ssm:eu-west-1:123456789012:parameter/x' },
      /IMAGE_CACHE_REGISTRY_SECRET: ".*" is not a Secrets Manager secret ARN/,
    ],
    [
      'a name with a space',
      ['--backend', 'aws'],
      { ...aws, IMAGE_CACHE_REGISTRY_SECRET: 'image cache' },
      /IMAGE_CACHE_REGISTRY_SECRET: "image cache" is not a valid secret name/,
    ],
  ];
  it.each(invalid)('is refused %s', (_name, argv, env, message) => {
    expect(() => parseServeArgs(argv, env)).toThrow(ConfigError);
    expect(() => parseServeArgs(argv, env)).toThrow(message);
  });
});

describe('IMAGE_CACHE_JOB_QUEUE_URL', () => {
  const aws = { IMAGE_CACHE_BACKEND: 'aws', IMAGE_CACHE_BUCKET: 'b-u-c', IMAGE_CACHE_TABLE: 'tab' };
  const queue = 'https://sqs.eu-west-1.amazonaws.com/123456789012/image-cache-jobs';

  it.each([
    [` ${queue} `, queue],
    ['http://127.0.0.1:4566/000000000000/jobs', 'http://127.0.0.1:4566/000000000000/jobs'],
    ['  ', undefined],
  ])('reads %j as queue %j', (value, expected) => {
    const config = parseServeArgs([], { ...aws, IMAGE_CACHE_JOB_QUEUE_URL: value });
    expect(config.aws?.jobQueueUrl).toBe(expected);
  });

  it.each([
    'image-cache-jobs',
    'arn:aws:sqs:eu-west-1:123456789012:image-cache-jobs',
    'https://sqs.eu-west-1.amazonaws.com/',
  ])('refuses %j at start: a name or an ARN is not a queue URL', (value) => {
    expect(() => parseServeArgs([], { ...aws, IMAGE_CACHE_JOB_QUEUE_URL: value })).toThrow(
      /IMAGE_CACHE_JOB_QUEUE_URL: .* is not an SQS queue URL/,
    );
  });
});

describe('parseAuthConfig', () => {
  it('words messages for the source it is given', () => {
    const text = JSON.stringify({ auths: { 'ghcr.io': 'x' } });
    expect(() => parseAuthConfig(text, 'IMAGE_CACHE_REGISTRY_SECRET', 'secret s')).toThrow(
      /^IMAGE_CACHE_REGISTRY_SECRET: auths\["ghcr.io"\] in secret s must be an object$/,
    );
  });

  it('leaves out the text JSON.parse would quote', () => {
    expect(() => parseAuthConfig('{"auths": hunter2 }', 'V', 'src')).toThrow(
      /^V: src is not valid JSON$/,
    );
    expect(() => parseAuthConfig('{"auths": {"a": "hunter2"', 'V', 'src')).toThrow(
      /^V: src is not valid JSON \(at position \d+\)$/,
    );
  });
});

describe('docs/configuration.md', () => {
  const root = resolve(import.meta.dirname, '..');
  const table = readFileSync(join(root, 'docs/configuration.md'), 'utf8');
  const sources = [
    'lib/config.ts',
    ...readdirSync(join(root, 'lib/config')).map((f) => `lib/config/${f}`),
  ]
    .map((file) => readFileSync(join(root, file), 'utf8'))
    .join('\n');

  it('lists every flag serve takes', () => {
    const options = /options: \{([\s\S]*?)\n {6}\},/.exec(
      readFileSync(join(root, 'lib/config.ts'), 'utf8'),
    )![1]!;
    const flags = [...options.matchAll(/^\s+'?([a-z-]+)'?: \{ type:/gm)].map((m) => `--${m[1]}`);
    expect(flags).toContain('--require-auth');
    expect(flags.filter((flag) => !table.includes(`\`${flag}\``))).toEqual([]);
  });

  it('lists every variable configuration reads', () => {
    const variables = new Set(sources.match(/\b(IMAGE_CACHE|AWS)_[A-Z0-9_]+\b/g));
    expect(variables.size).toBeGreaterThan(20);
    expect([...variables].filter((name) => !table.includes(name))).toEqual([]);
  });
});
