/**
 * Settings, read and validated once at startup into typed values that the composition hands to
 * whoever needs them; nothing else reads the environment. Every problem is a ConfigError whose
 * message names the flag or variable and says what is wrong, so a bad deployment fails before
 * it serves a single request instead of on the first pull. The parts live in lib/config/.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { type BackendSettings, parseBackendSettings } from './config/aws.ts';
import { parseLoadLimits } from './config/load-limits.ts';
import {
  AUTH_FILE_VAR,
  type CredentialMap,
  loadAuthFile,
  parseRegistries,
  REGISTRIES_VAR,
  type RegistryMap,
} from './config/registries.ts';
import {
  byteSize,
  ConfigError,
  durationMs,
  envFlag,
  integerIn,
  nonEmpty,
  type Setting,
} from './config/values.ts';
import type { LoadLimits } from './load/tar-reader.ts';
import {
  type BackgroundBudgets,
  DEFAULT_BACKGROUND_BUDGETS,
  parseBackgroundBudgets,
} from './watch/background-budget.ts';
import type { WatchLimits } from './watch/watch-settings.ts';

export type { AwsBackendConfig } from './config/aws.ts';
export { REGISTRY_SECRET_VAR } from './config/aws.ts';
export type { AwsSdkSettings } from './config/aws-sdk.ts';
export type { CredentialMap, RegistryCredentials, RegistryMap } from './config/registries.ts';
export { loadAuthFile, parseAuthConfig, parseRegistries } from './config/registries.ts';
export { ConfigError } from './config/values.ts';

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
  backend: BackendSettings['backend'];
  /** Set exactly when backend is 'aws'. */
  aws?: BackendSettings['aws'];
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
  /** What a docker load accepts (IMAGE_CACHE_MAX_LOAD_*). */
  loadLimits: LoadLimits;
  /** AWS_LAMBDA_FUNCTION_NAME: set when this process is a Lambda function. */
  lambdaFunction?: string;
  /** Watched references: how often serve looks for due checks, and their limits. */
  watch: WatchConfig;
}

export interface WatchConfig {
  /** How often `serve` looks for due checks (`--watch-tick`); 0 turns the schedule off. */
  tickMs: number;
  limits: WatchLimits;
  /** What background work may spend per registry (IMAGE_CACHE_BACKGROUND_BUDGET). */
  budgets: BackgroundBudgets;
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
  watchTick: '10s',
  watchMinEvery: '5m',
} as const;
const MAX_CONCURRENCY = 64;

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
        'watch-tick': { type: 'string' },
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

  // Flag over variable over nothing; blank variables count as unset.
  const setting = (flag: string, variable: string): Setting | undefined => {
    const fromFlag = values[flag];
    if (fromFlag !== undefined) return { name: `--${flag}`, text: fromFlag };
    const fromEnv = nonEmpty(env[variable]);
    return fromEnv === undefined ? undefined : { name: variable, text: fromEnv };
  };
  const durationOr = (found: Setting | undefined, fallback: string) =>
    found ? durationMs(found) : durationMs({ name: 'default', text: fallback });
  const positive = (found: Setting | undefined, fallback: string) => {
    const ms = durationOr(found, fallback);
    if (ms <= 0) throw new ConfigError(`${found?.name}: must be longer than 0s`);
    return ms;
  };

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

  const dataArg = values.data ?? SERVE_DEFAULTS.data;
  if (dataArg.trim() === '') throw new ConfigError('--data must not be empty');

  const tagTtlMs = durationOr(setting('tag-ttl', 'IMAGE_CACHE_TAG_TTL'), SERVE_DEFAULTS.tagTtl);
  const gcIntervalMs = durationOr(
    setting('gc-interval', 'IMAGE_CACHE_GC_INTERVAL'),
    SERVE_DEFAULTS.gcInterval,
  );
  const gcGraceMs = durationOr(setting('gc-grace', 'IMAGE_CACHE_GC_GRACE'), SERVE_DEFAULTS.gcGrace);
  // 0 means "no limit" for both: a zero budget or age would evict every unpinned image.
  const maxAge = setting('max-age', 'IMAGE_CACHE_MAX_AGE');
  const maxAgeMs = (maxAge && durationMs(maxAge)) || undefined;
  const maxBytesSetting = setting('max-bytes', 'IMAGE_CACHE_MAX_BYTES');
  const maxBytes = (maxBytesSetting && byteSize(maxBytesSetting)) || undefined;

  const rateSetting = setting('min-body-rate', 'IMAGE_CACHE_MIN_BODY_RATE');
  const requestLimits: RequestTimeLimits = {
    headersTimeoutMs: positive(
      setting('headers-timeout', 'IMAGE_CACHE_HEADERS_TIMEOUT'),
      SERVE_DEFAULTS.headersTimeout,
    ),
    bodyTimeoutMs: positive(
      setting('body-timeout', 'IMAGE_CACHE_BODY_TIMEOUT'),
      SERVE_DEFAULTS.bodyTimeout,
    ),
    minBodyBytesPerSecond: byteSize(
      rateSetting ?? { name: '--min-body-rate', text: SERVE_DEFAULTS.minBodyRate },
      ' (bytes per second)',
    ),
  };
  const stallTimeoutMs = positive(
    setting('stall-timeout', 'IMAGE_CACHE_STALL_TIMEOUT'),
    SERVE_DEFAULTS.stallTimeout,
  );
  const concurrency = setting('concurrency', 'IMAGE_CACHE_CONCURRENCY');
  const lambdaFunction = nonEmpty(env.AWS_LAMBDA_FUNCTION_NAME);
  const watch = parseWatchConfig(
    setting('watch-tick', 'IMAGE_CACHE_WATCH_TICK'),
    setting('watch-min-every', 'IMAGE_CACHE_WATCH_MIN_EVERY'),
    setting('background-budget', 'IMAGE_CACHE_BACKGROUND_BUDGET'),
  );

  return {
    host,
    port:
      values.port === undefined ? SERVE_DEFAULTS.port : integerIn(values.port, '--port', 0, 65535),
    dataDir: resolve(dataArg),
    // Before the auth file is read: an auth file beside the registry secret is refused as such.
    ...parseBackendSettings(values.backend, env, createResources),
    registries: parseRegistries(env[REGISTRIES_VAR]),
    credentials: loadAuthFile(env[AUTH_FILE_VAR]),
    tagTtlMs,
    concurrency: concurrency
      ? integerIn(concurrency.text, concurrency.name, 1, MAX_CONCURRENCY)
      : SERVE_DEFAULTS.concurrency,
    gcIntervalMs,
    gcGraceMs,
    ...(maxBytes !== undefined && { maxBytes }),
    ...(maxAgeMs !== undefined && { maxAgeMs }),
    requireAuth,
    requestLimits,
    stallTimeoutMs,
    mirrorRedirect: envFlag(env, MIRROR_REDIRECT_VAR, true),
    loadLimits: parseLoadLimits(env),
    ...(lambdaFunction !== undefined && { lambdaFunction }),
    watch,
  };
}

function parseWatchConfig(
  tick: Setting | undefined,
  minEvery: Setting | undefined,
  budget: Setting | undefined,
): WatchConfig {
  const minEveryMs = durationMs(
    minEvery ?? { name: 'default', text: SERVE_DEFAULTS.watchMinEvery },
  );
  if (minEveryMs < 1000) throw new ConfigError(`${minEvery?.name}: must be at least 1s`);
  return {
    tickMs: durationMs(tick ?? { name: 'default', text: SERVE_DEFAULTS.watchTick }),
    limits: { minEveryMs },
    budgets: budget
      ? parseBackgroundBudgets(
          budget.text,
          (message) => new ConfigError(`${budget.name}: ${message}`),
        )
      : DEFAULT_BACKGROUND_BUDGETS,
  };
}

const REQUIRE_AUTH_VAR = 'IMAGE_CACHE_REQUIRE_AUTH';
const MIRROR_REDIRECT_VAR = 'IMAGE_CACHE_MIRROR_REDIRECT';

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
