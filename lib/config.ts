/**
 * Settings, read and validated once at startup. Every problem is a ConfigError whose message
 * names the flag or variable and says what is wrong, so a bad deployment fails before it
 * serves a single request instead of on the first pull.
 */
import { readFileSync } from 'node:fs';
import { isIPv4, isIPv6 } from 'node:net';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { parseDuration } from './duration.ts';
import { loadLimitsFromEnv } from './load/tar-reader.ts';
import { isRegistryHost, normalizeRegistry } from './reference.ts';
import { parseByteSize } from './retention.ts';

export class ConfigError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ConfigError';
  }
}

/** Registry host (as in references: `docker.io`, `localhost:5000`) to its API base URL. */
export type RegistryMap = Map<string, URL>;

export interface RegistryCredentials {
  username: string;
  password: string;
  /** OAuth refresh token from `docker login` with an identity provider; used instead of a password. */
  identityToken?: string;
}

/** Registry host (lowercase, `docker.io` for Docker Hub) to what to log in with. */
export type CredentialMap = Map<string, RegistryCredentials>;

export interface ServeConfig {
  host: string;
  port: number;
  /** Absolute, resolved against the working directory at startup. */
  dataDir: string;
  registries: RegistryMap;
  credentials: CredentialMap;
  /** How long a cached tag is served without asking the upstream whether it moved. */
  tagTtlMs: number;
  /** Layer downloads running at once per pull. */
  concurrency: number;
  /** Time between scheduled GC + retention runs; 0 turns the schedule off. */
  gcIntervalMs: number;
  /** Unreferenced blobs touched more recently than this survive a (scheduled or manual) GC. */
  gcGraceMs: number;
  /** Storage budget for the blobs of all images; retention evicts LRU images above it. */
  maxBytes?: number;
  /** Images not pulled or saved for longer than this are evicted by retention. */
  maxAgeMs?: number;
  /** Where blobs and the catalog live: files + SQLite (default), or S3 + DynamoDB. */
  backend: 'embedded' | 'aws';
  /** Set exactly when backend is 'aws'. */
  aws?: AwsBackendConfig;
  /** Bearer tokens on every route but /_ping and /version (`--require-auth`); always on in Lambda. */
  requireAuth?: boolean;
  /** How long the Node server waits on a client; see RequestTimeLimits. */
  requestLimits: RequestTimeLimits;
  /**
   * A download no client waits for anymore is given up when it brings less than 256 KiB in
   * this long (BlobFetcher's AbandonPolicy).
   */
  stallTimeoutMs: number;
  /**
   * The registry door answers a stored blob with a 307 to a presigned storage URL where the
   * store signs them (S3); off for clients that cannot reach the storage (then blobs stream
   * through the server).
   */
  mirrorRedirect: boolean;
}

/**
 * Time a client may hold a connection without doing its part. A body may take as long as it
 * needs while it keeps moving: the limit is a rate, so a 50 GB load over a fast link is fine
 * and a body trickled a byte a second is cut off after one window.
 */
export interface RequestTimeLimits {
  /** From connecting to the last request header (slowloris). */
  headersTimeoutMs: number;
  /** The window a body's progress is judged over; a body that sends nothing for this long ends. */
  bodyTimeoutMs: number;
  /** Least a body must average over each window, bytes per second (0: only silence ends it). */
  minBodyBytesPerSecond: number;
}

/**
 * The AWS backend's resources. Region, credentials and endpoints (AWS_ENDPOINT_URL_S3,
 * AWS_ENDPOINT_URL_DYNAMODB) come from the SDK's standard settings, not from here.
 */
export interface AwsBackendConfig {
  bucket: string;
  table: string;
  /** Create the bucket and table when missing (local emulators); never on by default. */
  createResources: boolean;
  /**
   * IMAGE_CACHE_REGISTRY_SECRET: name or ARN of the Secrets Manager secret that holds the
   * upstream credentials (a Docker config.json), instead of IMAGE_CACHE_AUTH_FILE.
   */
  registrySecret?: string;
  /**
   * IMAGE_CACHE_WORKER_FUNCTION: the Lambda function that runs background jobs (asynchronous
   * invocations); without it jobs run in this process.
   */
  workerFunction?: string;
}

const REGISTRIES_VAR = 'IMAGE_CACHE_REGISTRIES';
const AUTH_FILE_VAR = 'IMAGE_CACHE_AUTH_FILE';

// Docker Hub's API does not live at docker.io; every other default serves its API on its name.
const DEFAULT_REGISTRIES: readonly (readonly [string, string])[] = [
  ['docker.io', 'https://registry-1.docker.io'],
  ...['ghcr.io', 'quay.io', 'registry.k8s.io', 'gcr.io', 'mcr.microsoft.com', 'public.ecr.aws'].map(
    (name) => [name, `https://${name}`] as const,
  ),
];

const SERVE_DEFAULTS = {
  host: '127.0.0.1',
  port: 5115,
  data: './data',
  tagTtl: '5m',
  concurrency: 4,
  gcInterval: '6h',
  gcGrace: '1h',
  headersTimeout: '30s',
  bodyTimeout: '60s',
  minBodyRate: '1KiB',
  stallTimeout: '30s',
} as const;
const MAX_CONCURRENCY = 64;

/**
 * IMAGE_CACHE_REGISTRIES: `name=url,name=url`. This is the upstream allow-list, so it is
 * strict: the url is only a scheme and a host (plain http only when written), never a path
 * or credentials. Unset or empty means the well-known public registries.
 */
export function parseRegistries(value?: string): RegistryMap {
  const registries: RegistryMap = new Map();
  if (value === undefined || value.trim() === '') {
    for (const [name, url] of DEFAULT_REGISTRIES) registries.set(name, new URL(url));
    return registries;
  }
  for (const entry of value.split(',')) {
    const item = entry.trim();
    if (item === '') continue; // a trailing comma is harmless
    const eq = item.indexOf('=');
    if (eq === -1) {
      throw new ConfigError(
        `${REGISTRIES_VAR}: entry ${JSON.stringify(item)} must be name=url, e.g. docker.io=https://registry-1.docker.io`,
      );
    }
    const name = registryName(item.slice(0, eq).trim(), REGISTRIES_VAR);
    if (registries.has(name)) {
      throw new ConfigError(`${REGISTRIES_VAR}: registry ${name} is listed more than once`);
    }
    registries.set(name, registryUrl(name, item.slice(eq + 1).trim()));
  }
  return registries;
}

/** IMAGE_CACHE_AUTH_FILE: a Docker `config.json`, read once at start. */
export function loadAuthFile(path?: string): CredentialMap {
  if (path === undefined || path.trim() === '') return new Map();
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new ConfigError(`${AUTH_FILE_VAR}: cannot read ${path}: ${(error as Error).message}`, {
      cause: error,
    });
  }
  return parseAuthConfig(text, AUTH_FILE_VAR, path);
}

/**
 * The `auths` of a Docker `config.json`, from the auth file or the registry secret; `setting`
 * (the variable) and `source` (the path, the secret) start every message. Entries without
 * credentials (what `docker login` leaves when a credential helper holds the secret) are
 * skipped. Messages name the registry, never the secret, and so leave out JSON.parse's own
 * message, which quotes the text it failed on.
 */
export function parseAuthConfig(text: string, setting: string, source: string): CredentialMap {
  const credentials: CredentialMap = new Map();
  let document: unknown;
  try {
    document = JSON.parse(text);
  } catch (error) {
    const position = /at position \d+/.exec((error as Error).message)?.[0];
    throw new ConfigError(
      `${setting}: ${source} is not valid JSON${position ? ` (${position})` : ''}`,
    );
  }
  if (!isObject(document)) {
    throw new ConfigError(`${setting}: ${source} must hold a JSON object with "auths"`);
  }
  const auths = document.auths ?? {};
  if (!isObject(auths)) {
    throw new ConfigError(`${setting}: "auths" in ${source} must be an object`);
  }
  const origins = new Map<string, string>();
  for (const [key, entry] of Object.entries(auths)) {
    const where = `${setting}: auths[${JSON.stringify(key)}] in ${source}`;
    if (!isObject(entry)) throw new ConfigError(`${where} must be an object`);
    const found = entryCredentials(entry, where);
    if (!found) continue;
    const name = authKeyToRegistry(key, where);
    const previous = credentials.get(name);
    if (previous && !sameCredentials(previous, found)) {
      throw new ConfigError(
        `${where} and auths[${JSON.stringify(origins.get(name))}] both name ${name} with different credentials`,
      );
    }
    credentials.set(name, found);
    origins.set(name, key);
  }
  return credentials;
}

/**
 * `serve` flags over environment over defaults. The CLI strips the subcommand and handles
 * `--help`; anything unknown here is a mistake worth stopping for.
 */
export function parseServeArgs(argv: string[], env: NodeJS.ProcessEnv): ServeConfig {
  let values: Record<string, string | undefined>;
  let createResources = false;
  let requireAuthFlag = false;
  try {
    const { values: flags } = parseArgs({
      args: argv,
      options: {
        host: { type: 'string' },
        port: { type: 'string' },
        data: { type: 'string' },
        'tag-ttl': { type: 'string' },
        concurrency: { type: 'string' },
        'gc-interval': { type: 'string' },
        'gc-grace': { type: 'string' },
        'max-bytes': { type: 'string' },
        'max-age': { type: 'string' },
        'headers-timeout': { type: 'string' },
        'body-timeout': { type: 'string' },
        'min-body-rate': { type: 'string' },
        'stall-timeout': { type: 'string' },
        backend: { type: 'string' },
        'create-resources': { type: 'boolean' },
        'require-auth': { type: 'boolean' },
      },
      strict: true,
      allowPositionals: false,
    });
    const { 'create-resources': create, 'require-auth': requireAuth, ...strings } = flags;
    createResources = create === true;
    requireAuthFlag = requireAuth === true;
    values = strings as Record<string, string | undefined>;
  } catch (error) {
    throw new ConfigError(`serve: ${(error as Error).message}`, { cause: error });
  }

  const host = values.host ?? SERVE_DEFAULTS.host;
  if (host.trim() === '') throw new ConfigError('--host must not be empty');
  const requireAuth = requireAuthFlag || envFlag(env, REQUIRE_AUTH_VAR);
  if (!requireAuth && !isLoopbackHost(host)) {
    throw new ConfigError(
      `--host ${host} accepts connections from other machines, which needs access control: ` +
        `add --require-auth (or ${REQUIRE_AUTH_VAR}=1) and create tokens with 'image-cache token create', ` +
        'or listen on 127.0.0.1',
    );
  }

  // Load limits are read where loads run (the Lambda handler has no flags), but a bad value
  // must stop the server at start rather than fail every load.
  try {
    loadLimitsFromEnv(env);
  } catch (error) {
    throw new ConfigError((error as Error).message);
  }

  const dataArg = values.data ?? SERVE_DEFAULTS.data;
  if (dataArg.trim() === '') throw new ConfigError('--data must not be empty');

  const ttlSetting = values['tag-ttl'] !== undefined ? '--tag-ttl' : 'IMAGE_CACHE_TAG_TTL';
  const ttlText = values['tag-ttl'] ?? nonEmpty(env.IMAGE_CACHE_TAG_TTL) ?? SERVE_DEFAULTS.tagTtl;
  let tagTtlMs: number;
  try {
    tagTtlMs = parseDuration(ttlText);
  } catch (error) {
    throw new ConfigError(`${ttlSetting}: ${(error as Error).message}`);
  }

  const setting = (flag: string, variable: string) => {
    const fromFlag = values[flag];
    if (fromFlag !== undefined) return { name: `--${flag}`, text: fromFlag };
    const fromEnv = nonEmpty(env[variable]);
    return fromEnv === undefined ? undefined : { name: variable, text: fromEnv };
  };
  const duration = (found: { name: string; text: string } | undefined, fallback?: string) => {
    const text = found?.text ?? fallback;
    if (text === undefined) return undefined;
    try {
      return parseDuration(text);
    } catch (error) {
      throw new ConfigError(`${found?.name}: ${(error as Error).message}`);
    }
  };
  const gcIntervalMs = duration(
    setting('gc-interval', 'IMAGE_CACHE_GC_INTERVAL'),
    SERVE_DEFAULTS.gcInterval,
  )!;
  const gcGraceMs = duration(setting('gc-grace', 'IMAGE_CACHE_GC_GRACE'), SERVE_DEFAULTS.gcGrace)!;
  // 0 means "no limit" for both: a zero budget or age would evict every unpinned image.
  const maxAgeMs = duration(setting('max-age', 'IMAGE_CACHE_MAX_AGE')) || undefined;
  const maxBytesSetting = setting('max-bytes', 'IMAGE_CACHE_MAX_BYTES');
  let maxBytes: number | undefined;
  if (maxBytesSetting) {
    try {
      maxBytes = parseByteSize(maxBytesSetting.text) || undefined;
    } catch (error) {
      throw new ConfigError(`${maxBytesSetting.name}: ${(error as Error).message}`);
    }
  }

  const positive = (found: { name: string; text: string } | undefined, fallback: string) => {
    const ms = duration(found, fallback)!;
    if (ms <= 0) throw new ConfigError(`${found?.name}: must be longer than 0s`);
    return ms;
  };
  const rateSetting = setting('min-body-rate', 'IMAGE_CACHE_MIN_BODY_RATE');
  let minBodyBytesPerSecond: number;
  try {
    minBodyBytesPerSecond = parseByteSize(rateSetting?.text ?? SERVE_DEFAULTS.minBodyRate);
  } catch (error) {
    throw new ConfigError(`${rateSetting?.name}: ${(error as Error).message} (bytes per second)`);
  }
  const requestLimits: RequestTimeLimits = {
    headersTimeoutMs: positive(
      setting('headers-timeout', 'IMAGE_CACHE_HEADERS_TIMEOUT'),
      SERVE_DEFAULTS.headersTimeout,
    ),
    bodyTimeoutMs: positive(
      setting('body-timeout', 'IMAGE_CACHE_BODY_TIMEOUT'),
      SERVE_DEFAULTS.bodyTimeout,
    ),
    minBodyBytesPerSecond,
  };
  const stallTimeoutMs = positive(
    setting('stall-timeout', 'IMAGE_CACHE_STALL_TIMEOUT'),
    SERVE_DEFAULTS.stallTimeout,
  );

  const concurrencySetting =
    values.concurrency !== undefined ? '--concurrency' : 'IMAGE_CACHE_CONCURRENCY';
  const concurrencyText = values.concurrency ?? nonEmpty(env.IMAGE_CACHE_CONCURRENCY);

  return {
    host,
    port:
      values.port === undefined ? SERVE_DEFAULTS.port : integerIn(values.port, '--port', 0, 65535),
    dataDir: resolve(dataArg),
    // Before the auth file is read: an auth file beside the registry secret is refused as such.
    ...backendSettings(values.backend, env, createResources),
    registries: parseRegistries(env[REGISTRIES_VAR]),
    credentials: loadAuthFile(env[AUTH_FILE_VAR]),
    tagTtlMs,
    concurrency:
      concurrencyText === undefined
        ? SERVE_DEFAULTS.concurrency
        : integerIn(concurrencyText, concurrencySetting, 1, MAX_CONCURRENCY),
    gcIntervalMs,
    gcGraceMs,
    ...(maxBytes !== undefined && { maxBytes }),
    ...(maxAgeMs !== undefined && { maxAgeMs }),
    requireAuth,
    requestLimits,
    stallTimeoutMs,
    mirrorRedirect: !['0', 'false', 'no'].includes(
      (nonEmpty(env[MIRROR_REDIRECT_VAR]) ?? '1').trim().toLowerCase(),
    ),
  };
}

const REQUIRE_AUTH_VAR = 'IMAGE_CACHE_REQUIRE_AUTH';
const MIRROR_REDIRECT_VAR = 'IMAGE_CACHE_MIRROR_REDIRECT';

/** 1/true/yes turn a switch on; anything else that is set is a mistake worth naming. */
function envFlag(env: NodeJS.ProcessEnv, variable: string): boolean {
  const text = nonEmpty(env[variable])?.trim().toLowerCase();
  if (text === undefined || ['0', 'false', 'no'].includes(text)) return false;
  if (['1', 'true', 'yes'].includes(text)) return true;
  throw new ConfigError(`${variable}: ${JSON.stringify(env[variable])} must be 1 or 0`);
}

/** Addresses only this machine can reach: 127.0.0.0/8, ::1 and the name localhost. */
export function isLoopbackHost(host: string): boolean {
  const bare = host
    .trim()
    .toLowerCase()
    .replace(/^\[(.*)\]$/, '$1');
  if (bare === 'localhost') return true;
  if (isIPv4(bare)) return bare.startsWith('127.');
  if (isIPv6(bare)) {
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(bare);
    return mapped ? mapped[1]!.startsWith('127.') : bare === '::1' || /^(0+:){7}0*1$/.test(bare);
  }
  return false;
}

const BACKEND_VAR = 'IMAGE_CACHE_BACKEND';
const BUCKET_VAR = 'IMAGE_CACHE_BUCKET';
const TABLE_VAR = 'IMAGE_CACHE_TABLE';
const WORKER_FUNCTION_VAR = 'IMAGE_CACHE_WORKER_FUNCTION';
export const REGISTRY_SECRET_VAR = 'IMAGE_CACHE_REGISTRY_SECRET';

/** `--backend` (or IMAGE_CACHE_BACKEND): embedded by default; aws needs a bucket and a table. */
function backendSettings(
  flag: string | undefined,
  env: NodeJS.ProcessEnv,
  createResources: boolean,
): Pick<ServeConfig, 'backend' | 'aws'> {
  const setting = flag !== undefined ? '--backend' : BACKEND_VAR;
  const backend = (flag ?? nonEmpty(env[BACKEND_VAR]) ?? 'embedded').trim();
  if (backend !== 'embedded' && backend !== 'aws') {
    throw new ConfigError(`${setting}: ${JSON.stringify(backend)} must be embedded or aws`);
  }
  if (backend === 'embedded') {
    if (createResources) {
      throw new ConfigError('--create-resources only applies to --backend aws');
    }
    // Refused rather than ignored: ignoring it would pull anonymously while the operator
    // believes the secret's credentials are in use.
    if (nonEmpty(env[REGISTRY_SECRET_VAR])) {
      throw new ConfigError(
        `${REGISTRY_SECRET_VAR} is read by --backend aws only: the embedded backend takes its credentials from ${AUTH_FILE_VAR}`,
      );
    }
    return { backend };
  }
  const bucket = nonEmpty(env[BUCKET_VAR])?.trim();
  const table = nonEmpty(env[TABLE_VAR])?.trim();
  if (!bucket || !table) {
    const missing = [!bucket && BUCKET_VAR, !table && TABLE_VAR].filter(Boolean).join(' and ');
    throw new ConfigError(
      `--backend aws needs ${missing}: the S3 bucket and DynamoDB table to use`,
    );
  }
  // S3's rules for bucket names (the DNS-compatible ones every region accepts).
  if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket) || bucket.includes('..')) {
    throw new ConfigError(
      `${BUCKET_VAR}: ${JSON.stringify(bucket)} is not a valid S3 bucket name (3-63 lowercase letters, digits, dots and hyphens)`,
    );
  }
  if (!/^[A-Za-z0-9_.-]{3,255}$/.test(table)) {
    throw new ConfigError(
      `${TABLE_VAR}: ${JSON.stringify(table)} is not a valid DynamoDB table name (3-255 letters, digits, _ . -)`,
    );
  }
  const registrySecret = registrySecretSetting(env);
  const workerFunction = nonEmpty(env[WORKER_FUNCTION_VAR])?.trim();
  return {
    backend,
    aws: {
      bucket,
      table,
      createResources,
      ...(registrySecret && { registrySecret }),
      ...(workerFunction && { workerFunction }),
    },
  };
}

/**
 * IMAGE_CACHE_REGISTRY_SECRET: a secret's name or ARN, checked against Secrets Manager's rules
 * so a typo fails here rather than as "not found" at the first read. Not combined with
 * IMAGE_CACHE_AUTH_FILE: with two sources, a registry named in both would need a winner, and
 * rotating the secret would leave the file's copy behind. One place holds the credentials.
 */
function registrySecretSetting(env: NodeJS.ProcessEnv): string | undefined {
  const secret = nonEmpty(env[REGISTRY_SECRET_VAR])?.trim();
  if (secret === undefined) return undefined;
  if (nonEmpty(env[AUTH_FILE_VAR])) {
    throw new ConfigError(
      `${AUTH_FILE_VAR} and ${REGISTRY_SECRET_VAR} are both set: keep the credentials in one of them (on AWS, the secret)`,
    );
  }
  const arn = /^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:(.+)$/.exec(secret);
  if (secret.startsWith('arn:') && !arn) {
    throw new ConfigError(
      `${REGISTRY_SECRET_VAR}: ${JSON.stringify(secret)} is not a Secrets Manager secret ARN (arn:aws:secretsmanager:<region>:<account>:secret:<name>)`,
    );
  }
  if (!/^[A-Za-z0-9/_+=.@-]{1,512}$/.test(arn?.[1] ?? secret)) {
    throw new ConfigError(
      `${REGISTRY_SECRET_VAR}: ${JSON.stringify(secret)} is not a valid secret name (1-512 letters, digits and / _ + = . @ -)`,
    );
  }
  return secret;
}

function registryName(raw: string, setting: string): string {
  const name = normalizeRegistry(raw.toLowerCase());
  // A name a reference could never produce (e.g. `myregistry`, which `myregistry/app` reads as
  // a Docker Hub namespace) would be allow-listed but unreachable: say so now.
  if (!isRegistryHost(name)) {
    throw new ConfigError(
      `${setting}: ${JSON.stringify(raw)} is not a registry host: it must be a domain or address ` +
        `with a "." or ":port" (or be localhost), as in image references`,
    );
  }
  return name;
}

function registryUrl(name: string, raw: string): URL {
  const where = `${REGISTRIES_VAR}: url for ${name}`;
  if (!/^https?:\/\//i.test(raw)) {
    throw new ConfigError(
      `${where} must start with https:// (or http:// for a plain-text registry)`,
    );
  }
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ConfigError(`${where} is not a valid URL: ${JSON.stringify(raw)}`);
  }
  if (url.username || url.password) {
    throw new ConfigError(`${where} must not contain credentials: put them in ${AUTH_FILE_VAR}`);
  }
  if (url.pathname !== '/' || url.search || url.hash) {
    throw new ConfigError(
      `${where} must be only a scheme and host (the registry API is always under /v2/), got ${JSON.stringify(raw)}`,
    );
  }
  return url;
}

/** Docker keys Hub credentials as `https://index.docker.io/v1/`; others by host, maybe a URL. */
function authKeyToRegistry(key: string, where: string): string {
  const host = key
    .trim()
    .replace(/^[a-z][a-z0-9+.-]*:\/\//i, '')
    .split('/')[0]!;
  const name = host.toLowerCase() === 'registry-1.docker.io' ? 'docker.io' : host;
  return registryName(name, where);
}

function entryCredentials(
  entry: Record<string, unknown>,
  where: string,
): RegistryCredentials | undefined {
  const auth = optionalString(entry, 'auth', where);
  const username = optionalString(entry, 'username', where);
  const password = optionalString(entry, 'password', where);
  const identityToken = optionalString(entry, 'identitytoken', where);

  let found: RegistryCredentials | undefined;
  if (auth) {
    found = decodeBasicAuth(auth, where);
  } else if (username !== undefined || password !== undefined) {
    if (!username || password === undefined) {
      throw new ConfigError(`${where} needs both "username" and "password"`);
    }
    found = { username, password };
  }
  if (identityToken) {
    // Docker stores `<token>` as the user name when only an identity token exists.
    found = {
      username: found?.username ?? '<token>',
      password: found?.password ?? '',
      identityToken,
    };
  }
  return found;
}

function decodeBasicAuth(auth: string, where: string): RegistryCredentials {
  const compact = auth.trim();
  // Buffer.from ignores invalid characters silently, which would turn a typo into a wrong login.
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(compact) || compact.length % 4 === 1) {
    throw new ConfigError(`${where}: "auth" is not valid base64`);
  }
  const decoded = Buffer.from(compact, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon <= 0) {
    throw new ConfigError(`${where}: "auth" must be base64 of username:password`);
  }
  return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

function optionalString(entry: Record<string, unknown>, field: string, where: string) {
  const value = entry[field];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') throw new ConfigError(`${where}: "${field}" must be a string`);
  return value;
}

function sameCredentials(a: RegistryCredentials, b: RegistryCredentials): boolean {
  return (
    a.username === b.username && a.password === b.password && a.identityToken === b.identityToken
  );
}

function integerIn(text: string, setting: string, min: number, max: number): number {
  const value = Number(text.trim());
  if (!/^\d+$/.test(text.trim()) || value < min || value > max) {
    throw new ConfigError(
      `${setting}: ${JSON.stringify(text)} must be a whole number from ${min} to ${max}`,
    );
  }
  return value;
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value.trim() === '' ? undefined : value;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
