import type { TokenAuthenticator } from '../auth/access.ts';
import type { CollectorClaims } from '../gc.ts';
import type { Jobs } from '../jobs/jobs.ts';
import type { LoadLimits } from '../load/tar-reader.ts';
import type { CacheMetrics } from '../metrics/cache-metrics.ts';
import type { StatsRecorder } from '../metrics/stats-recorder.ts';
import type { MirrorFills } from '../mirror/fills.ts';
import type { RegistryDoorSettings } from '../mirror/registry-door.ts';
import type { BlobStore } from '../ports/blob-store.ts';
import type { Clock } from '../ports/clock.ts';
import type { GcReportLog } from '../ports/gc-report-log.ts';
import type { ImageCatalog } from '../ports/image-catalog.ts';
import type { JobStore } from '../ports/job-store.ts';
import type { StatsLog } from '../ports/stats-log.ts';
import type { TokenStore } from '../ports/token-store.ts';
import type { Upstream } from '../ports/upstream.ts';
import type { WatchStore } from '../ports/watch-store.ts';
import type { PullService } from '../pull.ts';
import type { CredentialStatus } from '../registry/credential-source.ts';
import type { MaintenanceSettings } from '../retention.ts';
import type { SaveExports } from '../save/export.ts';
import type { BackgroundBudgets } from '../watch/background-budget.ts';
import type { WatchLimits } from '../watch/watch-settings.ts';

/** Everything a route may use; built once by the composition root. */
export interface EngineContext {
  catalog: ImageCatalog;
  jobStore: JobStore;
  tokens: TokenStore;
  gcReports: GcReportLog;
  /** Watched references, registry pauses and background budgets (the same catalog). */
  watches: WatchStore;
  /** What watches may ask for and what background work may spend; absent: no watches. */
  watch?: { limits: WatchLimits; budgets: BackgroundBudgets };
  /** The hourly history (the same catalog), for /cache/stats and maintenance's gauges. */
  stats: StatsLog;
  /**
   * Writes this process's counter deltas into `stats`; absent without a totals source (until
   * the composition has CacheMetrics, only tests give one).
   */
  statsRecorder?: StatsRecorder;
  blobs: BlobStore;
  upstream: Upstream;
  pulls: PullService;
  clock: Clock;
  /** This process's figures for /metrics, the history and the Lambda EMF line. */
  metrics: CacheMetrics;
  /** Registries on the allow-list, for /cache/registries. */
  registries: ReadonlyMap<string, URL>;
  /** Which registries have upstream credentials (never the credentials), for the same. */
  credentials: CredentialStatus;
  version: string;
  /** What this process's collections are working on (one set per blob store). */
  gcClaims: CollectorClaims;
  /** What a docker load accepts (body, expanded size, ratio, entries). */
  loadLimits: LoadLimits;
  /** GC grace window and retention policy, for /cache/gc and /cache/retention. */
  maintenance: MaintenanceSettings;
  /** Bearer-token checks before every route; absent when access control is off (loopback dev). */
  auth?: TokenAuthenticator;
  /** Save through storage (presigned downloads); absent where the backend has none (embedded). */
  exports?: SaveExports;
  /** The registry door's background fills: images its clients fetched, pulled and tagged. */
  fills: MirrorFills;
  /** How the registry door answers (redirects to storage). */
  door: RegistryDoorSettings;
  /**
   * Background jobs: pulls and loads that would outlive the front door's deadline
   * (`HttpRequest.deadline`) run as jobs, and /cache/jobs follows them.
   */
  jobs?: Jobs;
}
