import type { Digest } from '../digest.ts';
import type { RepositoryName } from '../model.ts';
import type { Catalog } from '../ports/catalog.ts';
import type { GcReport, GcReportLog } from '../ports/gc-report-log.ts';
import type { ImageCatalog, ImageCommit, ManifestUse, PinRecord } from '../ports/image-catalog.ts';
import type { JobEnd, JobProgress, JobStore, LeaseTerms, NewJob } from '../ports/job-store.ts';
import type { Figures, StatsLog } from '../ports/stats-log.ts';
import type { TokenRecord, TokenStore } from '../ports/token-store.ts';
import type {
  RegistryPause,
  WatchCheckOutcome,
  WatchSettings,
  WatchStore,
} from '../ports/watch-store.ts';

/** The six stores one backend keeps, each a module of its own. */
export interface CatalogParts {
  images: ImageCatalog;
  jobs: JobStore;
  tokens: TokenStore;
  gcReports: GcReportLog;
  stats: StatsLog;
  watches: WatchStore;
}

/**
 * One object for all six ports, as the composition root passes it around: each method goes to
 * the part that owns it. Both backends extend this, so the forwarding is written once.
 */
export class ComposedCatalog implements Catalog {
  readonly #images: ImageCatalog;
  readonly #jobs: JobStore;
  readonly #tokens: TokenStore;
  readonly #gcReports: GcReportLog;
  readonly #stats: StatsLog;
  readonly #watches: WatchStore;

  constructor(parts: CatalogParts) {
    this.#images = parts.images;
    this.#jobs = parts.jobs;
    this.#tokens = parts.tokens;
    this.#gcReports = parts.gcReports;
    this.#stats = parts.stats;
    this.#watches = parts.watches;
  }

  // --- ImageCatalog

  getBlob(digest: Digest) {
    return this.#images.getBlob(digest);
  }
  touchBlob(digest: Digest, now: number) {
    return this.#images.touchBlob(digest, now);
  }
  addBlob(
    blob: { digest: Digest; size: number; unpackedSize?: number; diffId?: Digest },
    now: number,
  ) {
    return this.#images.addBlob(blob, now);
  }
  fillLayerFacts(digest: Digest, facts: { unpackedSize?: number; diffId?: Digest }) {
    return this.#images.fillLayerFacts(digest, facts);
  }
  commitImage(commit: ImageCommit) {
    return this.#images.commitImage(commit);
  }
  getManifest(digest: Digest) {
    return this.#images.getManifest(digest);
  }
  listImages() {
    return this.#images.listImages();
  }
  touchManifest(digest: Digest, now: number, use?: ManifestUse) {
    return this.#images.touchManifest(digest, now, use);
  }
  manifestUsage(digests: readonly Digest[]) {
    return this.#images.manifestUsage(digests);
  }
  listImageEntries() {
    return this.#images.listImageEntries();
  }
  findImageEntries(hexPrefix: string) {
    return this.#images.findImageEntries(hexPrefix);
  }
  listRepositoryTags(repository: RepositoryName) {
    return this.#images.listRepositoryTags(repository);
  }
  backfillImageEntries() {
    return this.#images.backfillImageEntries();
  }
  getTag(repository: RepositoryName, tag: string) {
    return this.#images.getTag(repository, tag);
  }
  listTags() {
    return this.#images.listTags();
  }
  markTagChecked(repository: RepositoryName, tag: string, now: number) {
    return this.#images.markTagChecked(repository, tag, now);
  }
  getDigestRef(repository: RepositoryName, digest: Digest) {
    return this.#images.getDigestRef(repository, digest);
  }
  listDigestRefs() {
    return this.#images.listDigestRefs();
  }
  listManifests() {
    return this.#images.listManifests();
  }

  referencedBlobs(blobs: Iterable<Digest>) {
    return this.#images.referencedBlobs(blobs);
  }
  deleteTag(repository: RepositoryName, tag: string) {
    return this.#images.deleteTag(repository, tag);
  }
  deleteDigestRef(repository: RepositoryName, digest: Digest) {
    return this.#images.deleteDigestRef(repository, digest);
  }
  deleteManifestIfUnreferenced(digest: Digest) {
    return this.#images.deleteManifestIfUnreferenced(digest);
  }
  putPin(pin: PinRecord) {
    return this.#images.putPin(pin);
  }
  deletePin(name: string) {
    return this.#images.deletePin(name);
  }
  listPins() {
    return this.#images.listPins();
  }
  listBlobs() {
    return this.#images.listBlobs();
  }
  beginBlobDeletion(digest: Digest, expectedGeneration: number) {
    return this.#images.beginBlobDeletion(digest, expectedGeneration);
  }
  finishBlobDeletion(digest: Digest) {
    return this.#images.finishBlobDeletion(digest);
  }
  claimOrphanBlob(digest: Digest, size: number, now: number) {
    return this.#images.claimOrphanBlob(digest, size, now);
  }

  // --- GcReportLog

  putGcReport(report: GcReport) {
    return this.#gcReports.putGcReport(report);
  }
  listGcReports(limit: number) {
    return this.#gcReports.listGcReports(limit);
  }

  // --- StatsLog

  addHour(hourStart: number, counters: Figures, gauges: Figures) {
    return this.#stats.addHour(hourStart, counters, gauges);
  }
  listHours(sinceHour: number, untilHour?: number) {
    return this.#stats.listHours(sinceHour, untilHour);
  }

  // --- WatchStore

  putWatch(settings: WatchSettings, now: number, nextCheckAt: number) {
    return this.#watches.putWatch(settings, now, nextCheckAt);
  }
  getWatch(name: string) {
    return this.#watches.getWatch(name);
  }
  deleteWatch(name: string) {
    return this.#watches.deleteWatch(name);
  }
  listWatches() {
    return this.#watches.listWatches();
  }
  claimWatchCheck(name: string, due: number, leaseUntil: number) {
    return this.#watches.claimWatchCheck(name, due, leaseUntil);
  }
  recordWatchCheck(name: string, outcome: WatchCheckOutcome) {
    return this.#watches.recordWatchCheck(name, outcome);
  }
  pauseRegistry(pause: RegistryPause) {
    return this.#watches.pauseRegistry(pause);
  }
  listRegistryPauses() {
    return this.#watches.listRegistryPauses();
  }
  takeBackgroundPull(registry: string, hourStart: number, limit: number) {
    return this.#watches.takeBackgroundPull(registry, hourStart, limit);
  }
  backgroundPulls(registry: string, hourStart: number) {
    return this.#watches.backgroundPulls(registry, hourStart);
  }

  // --- TokenStore

  putToken(token: TokenRecord) {
    return this.#tokens.putToken(token);
  }
  getTokenByHash(hash: string) {
    return this.#tokens.getTokenByHash(hash);
  }
  listTokens() {
    return this.#tokens.listTokens();
  }
  deleteToken(id: string) {
    return this.#tokens.deleteToken(id);
  }
  touchToken(hash: string, now: number) {
    return this.#tokens.touchToken(hash, now);
  }

  // --- JobStore

  createOrJoinJob(job: NewJob) {
    return this.#jobs.createOrJoinJob(job);
  }
  getJob(id: string) {
    return this.#jobs.getJob(id);
  }
  listRecentJobs(limit: number, now: number) {
    return this.#jobs.listRecentJobs(limit, now);
  }
  claimJob(id: string, lease: LeaseTerms) {
    return this.#jobs.claimJob(id, lease);
  }
  recordJobProgress(id: string, lease: LeaseTerms, progress: JobProgress) {
    return this.#jobs.recordJobProgress(id, lease, progress);
  }
  finishJob(id: string, owner: string, end: JobEnd) {
    return this.#jobs.finishJob(id, owner, end);
  }
}
