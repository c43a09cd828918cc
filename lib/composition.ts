import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { S3Client } from '@aws-sdk/client-s3';
import packageJson from '../package.json' with { type: 'json' };
import { FsBlobStore } from './adapters/fs-blob-store.ts';
import { SqliteCatalog } from './adapters/sqlite-catalog.ts';
import { TokenAuthenticator } from './auth/access.ts';
import type { ServeConfig } from './config.ts';
import type { EngineContext } from './engine/context.ts';
import {
  CollectorClaims,
  collectFreed,
  DEFAULT_ORPHAN_MIN_AGE_MS,
  type GcSchedule,
  startGcSchedule,
} from './gc.ts';
import { InProcessDispatcher } from './jobs/in-process-dispatcher.ts';
import { JobSignals } from './jobs/job-signals.ts';
import { type Jobs, Redispatcher } from './jobs/jobs.ts';
import { startPullJob } from './jobs/pull-job.ts';
import { type QueuedJobOutcome, runQueuedJob } from './jobs/queued-job.ts';
import { runAfterLease } from './jobs/run-after-lease.ts';
import { JobRunner } from './jobs/runner.ts';
import { CacheMetrics } from './metrics/cache-metrics.ts';
import type { GaugeValues } from './metrics/names.ts';
import { StatsRecorder, type TotalsSource } from './metrics/stats-recorder.ts';
import { MirrorFills } from './mirror/fills.ts';
import type { BlobStore } from './ports/blob-store.ts';
import { type SweptStaging, stagingSweeperOf } from './ports/blob-store.ts';
import type { Catalog, JobRecord } from './ports/catalog.ts';
import { type Clock, systemClock } from './ports/clock.ts';
import type { JobDispatcher } from './ports/job-dispatcher.ts';
import type { Upstream } from './ports/upstream.ts';
import { PullService } from './pull.ts';
import { anonymousDockerHubWarning } from './registry/anonymous-registries.ts';
import {
  type CredentialSource,
  type CredentialStatus,
  staticCredentials,
} from './registry/credential-source.ts';
import { HttpUpstream } from './registry/http-upstream.ts';
import { runMaintenance } from './retention.ts';
import { liveStorageGauges, storageFigures } from './stats/storage-figures.ts';
import { Watcher, type WatchPassReport } from './watch/watcher.ts';

/** How long a registry client's redirect to a stored blob lives (it is fetched at once). */
const MIRROR_REDIRECT_SECONDS = 600;

/** What a download must bring per stall window once nobody waits for it (`--stall-timeout`). */
const STALLED_BELOW_BYTES = 256 * 1024;
/** How long /metrics reuses the stored figures it read. */
const STORED_FIGURES_TTL_MS = 60_000;

export type { GcSchedule };

/** What tests put in. */
export interface Overrides {
  clock?: Clock;
  upstream?: Upstream;
  /** Counter totals for the stats recorder instead of this process's metrics (tests). */
  totals?: TotalsSource;
}

export interface Composition {
  context: EngineContext;
  /** The operations the fronts run beside requests: maintenance, start-up sweep, jobs. */
  operations: Operations;
  close(): Promise<void>;
}

/** What a front may ask of the composition besides routing a request. */
export interface Operations {
  /**
   * Image entries older records lack (once), retention (when a budget or age is set), then a
   * full collection with the grace window.
   */
  maintain(): ReturnType<typeof runMaintenance>;
  /** Maintenance every `intervalMs` (serve's own schedule; AWS uses EventBridge instead). */
  scheduleMaintenance(intervalMs: number, onError: (error: unknown) => void): GcSchedule;
  /**
   * Temp files of writes that died with an earlier process (a killed pull or load) go at once,
   * those of live writers (another process on the same data) only once idle; run at start.
   */
  sweepDeadWrites(): Promise<SweptStaging | undefined>;
  /**
   * Logs why Docker Hub will soon refuse pulls when it is allowed without credentials; run once
   * at start (on Lambda, once per container) so the 429s that follow have an explanation.
   */
  warnOfAnonymousDockerHub(log?: (message: string) => void): Promise<void>;
  /**
   * Writes what the counters grew by since the last flush into the hourly history (nothing when
   * they did not); answers the hours written. Serve runs it every minute and at shutdown,
   * Lambda at the end of each invocation.
   */
  flushStats(): Promise<number>;
  /** flushStats every `intervalMs` (serve; Lambda flushes per invocation instead). */
  scheduleStatsFlush(intervalMs: number, onError: (error: unknown) => void): GcSchedule;
  /**
   * One pass of the watch schedule: checks every due watched tag and starts pulls of the ones
   * that moved. Serve runs it every tick; on AWS the scheduled function runs it each minute.
   * `remainingMs` stops starting checks near a deadline.
   */
  checkWatches(remainingMs?: () => number): Promise<WatchPassReport>;
  /** checkWatches every `intervalMs` (serve's own schedule). */
  scheduleWatches(intervalMs: number, onError: (error: unknown) => void): GcSchedule;
  /** Runs one background job to its end, waiting out a live lease within `remainingMs`. */
  runJob(jobId: string, remainingMs: () => number): Promise<JobRecord | undefined>;
  /** Runs a job the job queue delivered, as runJob does, and says whether its message may go. */
  runQueuedJob(jobId: string, remainingMs: () => number): Promise<QueuedJobOutcome>;
}

function operations(context: EngineContext): Operations {
  const maintain = () => runMaintenance(context, context.maintenance, collectFreed(context));
  const flushStats = async () => (await context.statsRecorder?.flush()) ?? 0;
  const checkWatches = (remainingMs?: () => number) => watcherOf(context).checkDue(remainingMs);
  return {
    maintain,
    scheduleMaintenance: (intervalMs, onError) =>
      startGcSchedule({ intervalMs, run: maintain, onError }),
    sweepDeadWrites: async () =>
      stagingSweeperOf(context.blobs)?.sweepStaging(
        Math.max(context.maintenance.gcGraceMs, DEFAULT_ORPHAN_MIN_AGE_MS),
      ),
    warnOfAnonymousDockerHub: async (log = (message) => console.warn(message)) => {
      const warning = await anonymousDockerHubWarning(context.registries, context.credentials);
      if (warning) log(`image-cache: warning: ${warning}`);
    },
    flushStats,
    scheduleStatsFlush: (intervalMs, onError) =>
      startGcSchedule({ intervalMs, run: flushStats, onError }),
    checkWatches,
    scheduleWatches: (intervalMs, onError) =>
      startGcSchedule({ intervalMs, run: () => checkWatches(), onError }),
    runJob: async (jobId, remainingMs) => runAfterLease(leaseDeps(context), jobId, remainingMs),
    runQueuedJob: async (jobId, remainingMs) =>
      runQueuedJob(leaseDeps(context), jobId, remainingMs),
  };
}

function watcherOf(context: EngineContext): Watcher {
  if (!context.jobs || !context.watch) throw new Error('this composition keeps no watches');
  return new Watcher({
    watches: context.watches,
    catalog: context.catalog,
    jobStore: context.jobStore,
    upstream: context.upstream,
    clock: context.clock,
    jobs: context.jobs,
    budgets: context.watch.budgets,
  });
}

function leaseDeps(context: EngineContext): Parameters<typeof runAfterLease>[0] {
  if (!context.jobs) throw new Error('this composition runs no jobs');
  return { runner: context.jobs.runner, jobStore: context.jobStore, clock: context.clock };
}

/** The one place that turns validated configuration into the core and its adapters. */
export function composeEmbedded(config: ServeConfig, overrides: Overrides = {}): Composition {
  mkdirSync(config.dataDir, { recursive: true });
  const blobs = new FsBlobStore(config.dataDir);
  const catalog = new SqliteCatalog(join(config.dataDir, 'catalog.db'));
  const context = engineContext(config, blobs, catalog, overrides);
  const jobs = inProcessJobs(context);
  const composed = { ...context, jobs };
  return {
    context: composed,
    operations: operations(composed),
    close: async () => {
      await jobs.dispatcher.idle();
      catalog.close();
    },
  };
}

/**
 * The AWS backend: blobs in S3, the catalog in DynamoDB, both clients from the SDK's standard
 * settings (region, credentials, AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL_DYNAMODB). The SDK is
 * loaded only here, so the embedded default starts without it. Upstream credentials come from
 * the Secrets Manager secret IMAGE_CACHE_REGISTRY_SECRET names, read at start and re-read
 * when old or refused (lib/adapters/secret-credentials.ts). With `createResources` the
 * bucket and table are created when missing (for local emulators; production uses infra/).
 */
export async function composeAws(
  config: ServeConfig,
  overrides: Overrides = {},
): Promise<Composition> {
  if (!config.aws) throw new Error('composeAws needs the aws settings of --backend aws');
  const { bucket, table, createResources, sdk, uploadPartSize } = config.aws;
  // Read before any other client exists, so a missing or unreadable secret stops the start
  // with its own message and leaves nothing to close.
  const registryCredentials = config.aws.registrySecret
    ? await (await import('./adapters/secret-credentials.ts')).SecretCredentials.open({
        secretId: config.aws.registrySecret,
        clock: overrides.clock ?? systemClock,
        sdk: config.aws.sdk,
      })
    : undefined;
  const [{ S3BlobStore }, { DynamoCatalog }, { S3SaveExports }] = await Promise.all([
    import('./adapters/s3-blob-store.ts'),
    import('./adapters/dynamo-catalog.ts'),
    import('./adapters/s3-save-exports.ts'),
  ]);
  const blobs = new S3BlobStore({
    client: S3BlobStore.clientFor(sdk),
    bucket,
    ...(uploadPartSize !== undefined && { uploadPartSize }),
  });
  const catalog = new DynamoCatalog({ client: DynamoCatalog.clientFor(sdk), tableName: table });
  try {
    if (createResources) {
      await catalog.createTable();
      await createBucketIfMissing(blobs.client, bucket);
    }
  } catch (error) {
    catalog.close();
    blobs.client.destroy();
    registryCredentials?.close();
    throw error;
  }
  const context = {
    ...engineContext(config, blobs, catalog, overrides, registryCredentials),
    // Before the jobs: their runner writes the exports that outlive a request.
    exports: new S3SaveExports(blobs, { now: () => (overrides.clock ?? systemClock).now() }),
  };
  const jobs = await awsJobs(context, config);
  // Behind Lambda the registry door's fills are jobs for the worker, started with the manifest.
  const fills = jobs.remote
    ? new MirrorFills(
        { pull: (ref, platform) => startPullJob(context, jobs, ref, platform) },
        { immediate: true },
      )
    : context.fills;
  const composed = { ...context, jobs, fills };
  return {
    context: composed,
    operations: operations(composed),
    close: async () => {
      await jobs.local.idle();
      jobs.remote?.close();
      catalog.close();
      blobs.client.destroy();
      registryCredentials?.close();
    },
  };
}

/** The context every backend shares, around its blob store and catalog. */
function engineContext(
  config: ServeConfig,
  blobs: BlobStore,
  catalog: Catalog,
  overrides: Overrides,
  /** Default: the auth file's credentials; on AWS, the registry secret when one is set. */
  credentials: CredentialSource & CredentialStatus = staticCredentials(config.credentials),
): EngineContext {
  const clock = overrides.clock ?? systemClock;
  const metrics = new CacheMetrics({
    now: () => clock.now(),
    storage: storedFigures(catalog, config.maxBytes, clock),
  });
  const upstream =
    overrides.upstream ??
    new HttpUpstream({ registries: config.registries, credentials, clock, observer: metrics });
  const pulls = new PullService({
    catalog,
    blobs,
    upstream,
    clock,
    metrics,
    tagTtlMs: config.tagTtlMs,
    concurrency: config.concurrency,
    abandon: { windowMs: config.stallTimeoutMs, minBytes: STALLED_BELOW_BYTES },
  });
  return {
    // One adapter serves all six ports; consumers each see only the one they need.
    catalog,
    jobStore: catalog,
    tokens: catalog,
    gcReports: catalog,
    stats: catalog,
    watches: catalog,
    watch: { limits: config.watch.limits, budgets: config.watch.budgets },
    statsRecorder: new StatsRecorder({
      totals: overrides.totals ?? (() => metrics.totals()),
      log: catalog,
      clock,
      gauges: liveStorageGauges(catalog, config.maxBytes, () => clock.now()),
    }),
    blobs,
    upstream,
    pulls,
    metrics,
    fills: new MirrorFills({
      pull: (ref, platform) => pulls.pull(ref, platform ? { platform } : {}),
      downloading: (digest) => pulls.blobs.downloading(digest),
    }),
    door: { redirectBlobs: config.mirrorRedirect, redirectSeconds: MIRROR_REDIRECT_SECONDS },
    clock,
    registries: config.registries,
    credentials,
    version: packageVersion(),
    gcClaims: new CollectorClaims(),
    loadLimits: config.loadLimits,
    maintenance: {
      gcGraceMs: config.gcGraceMs,
      ...(config.maxBytes !== undefined && { maxBytes: config.maxBytes }),
      ...(config.maxAgeMs !== undefined && { maxAgeMs: config.maxAgeMs }),
    },
    ...(config.requireAuth && { auth: new TokenAuthenticator(catalog, clock) }),
  };
}

/**
 * The stored figures /metrics shows: the same answer as /cache/stats's `storage` (live on
 * SQLite, the last maintenance pass's on DynamoDB, never a Scan), remembered for a minute so a
 * scrape every few seconds does not read the history each time.
 */
function storedFigures(catalog: Catalog, maxBytes: number | undefined, clock: Clock) {
  let cached: { at: number; values: GaugeValues } | undefined;
  return async (): Promise<GaugeValues> => {
    const now = clock.now();
    if (cached && now - cached.at < STORED_FIGURES_TTL_MS) return cached.values;
    const figures = await storageFigures({ catalog, stats: catalog }, [], maxBytes, now);
    const values: GaugeValues = {
      storedBytes: figures.storedBytes,
      storedBlobs: figures.storedBlobs,
      images: figures.images,
      ...(figures.budgetBytes !== null && { budgetBytes: figures.budgetBytes }),
    };
    cached = { at: now, values };
    return values;
  };
}

/** Jobs run by this process: the runner and a dispatcher that starts it in the background. */
function inProcessJobs(context: EngineContext): Jobs & { dispatcher: InProcessDispatcher } {
  const signals = new JobSignals();
  const runner = new JobRunner({ ...context, signals });
  const dispatcher = new InProcessDispatcher((jobId) => runner.run(jobId));
  return { runner, signals, dispatcher, redispatcher: new Redispatcher(dispatcher, context.clock) };
}

/**
 * On AWS, jobs go to the worker function: through the job queue (IMAGE_CACHE_JOB_QUEUE_URL)
 * when one is named, else by asynchronous invocation (IMAGE_CACHE_WORKER_FUNCTION); each SDK is
 * loaded only then. With neither (`serve --backend aws`, tests) they run in this process.
 */
async function awsJobs(
  context: EngineContext,
  config: ServeConfig,
): Promise<Jobs & { local: InProcessDispatcher; remote?: { close(): void } }> {
  const jobs = inProcessJobs(context);
  const remote = config.aws && (await workerDispatcher(config.aws));
  if (!remote) {
    if (config.lambdaFunction) {
      console.warn(
        'IMAGE_CACHE_JOB_QUEUE_URL is not set: background jobs run inside this function and stop with its invocation',
      );
    }
    return { ...jobs, local: jobs.dispatcher };
  }
  return {
    ...jobs,
    dispatcher: remote,
    redispatcher: new Redispatcher(remote, context.clock),
    local: jobs.dispatcher,
    remote,
  };
}

/** The dispatcher that hands jobs to the worker function, if one is configured. */
async function workerDispatcher(
  aws: NonNullable<ServeConfig['aws']>,
): Promise<(JobDispatcher & { close(): void }) | undefined> {
  if (aws.jobQueueUrl) {
    const { SqsDispatcher } = await import('./adapters/sqs-dispatcher.ts');
    return new SqsDispatcher({
      client: SqsDispatcher.clientFor(aws.sdk),
      queueUrl: aws.jobQueueUrl,
    });
  }
  if (aws.workerFunction) {
    const { LambdaDispatcher } = await import('./adapters/lambda-dispatcher.ts');
    const client = LambdaDispatcher.clientFor(aws.sdk);
    return new LambdaDispatcher({ client, functionName: aws.workerFunction });
  }
  return undefined;
}

/** For --create-resources against emulators; an existing bucket of ours is fine. */
async function createBucketIfMissing(client: S3Client, bucket: string): Promise<void> {
  const { CreateBucketCommand } = await import('@aws-sdk/client-s3');
  try {
    await client.send(new CreateBucketCommand({ Bucket: bucket }));
  } catch (error) {
    const name = (error as Error).name;
    if (name !== 'BucketAlreadyOwnedByYou' && name !== 'BucketAlreadyExists') throw error;
  }
}

// Imported rather than read from disk: a bundled Lambda handler has no package.json beside it.
function packageVersion(): string {
  return packageJson.version;
}
