import type { Digest } from '../digest.ts';
import type { RepositoryName, Scope } from '../model.ts';

/** What `docker image ls` needs, read from the config once at pull time. */
export interface ImageSummary {
  configDigest: Digest;
  /** RFC 3339 from the config; absent configs leave it empty like Docker does. */
  created?: string;
  os: string;
  architecture: string;
  variant?: string;
  /** Bytes of the files in all layers (what Docker shows as SIZE). */
  size: number;
  labels: Record<string, string>;
}

export interface ManifestRecord {
  digest: Digest;
  mediaType: string;
  /** Exact bytes as the registry or tarball had them, so the digest stays verifiable. */
  raw: Uint8Array;
  /** Image manifest: config then layers. Index: empty. GC marks from these. */
  blobs: Digest[];
  /** Index: the child manifests it lists (only some may be stored). Image: empty. */
  children: Digest[];
  image?: ImageSummary;
  createdAt: number;
  lastUsedAt: number;
}

export interface TagRecord {
  repository: RepositoryName;
  tag: string;
  /** The platform-specific image manifest the tag resolves to. */
  manifest: Digest;
  /** What the registry answered for the tag (index or manifest); RepoDigests show it. */
  source: Digest;
  /** `os/arch[/variant]` when the tag was resolved from an index. */
  platform?: string;
  updatedAt: number;
  /** Last time the upstream confirmed the tag (pull TTL revalidation). */
  checkedAt: number;
}

/** `repo@digest`: recorded on every pull (RepoDigests) and by digest pulls. */
export interface DigestRefRecord {
  repository: RepositoryName;
  digest: Digest;
  manifest: Digest;
  createdAt: number;
}

export type BlobState = 'live' | 'deleting';

/**
 * GC bookkeeping for one blob. `generation` changes on every touch; the collector's
 * live -> deleting transition is conditional on the generation it observed before marking,
 * so a writer that touched the blob in between always wins.
 */
export interface BlobRecord {
  digest: Digest;
  size: number;
  /** Bytes of the files inside a layer; absent for configs and unknown layers. */
  unpackedSize?: number;
  /**
   * sha256 of the uncompressed layer, as a config's rootfs.diff_ids must list it; absent for
   * configs and for layers that could not be unpacked (zstd without a decoder).
   */
  diffId?: Digest;
  state: BlobState;
  generation: number;
  touchedAt: number;
}

/** `docker`'s "a container uses this image", for a cache: prune and rm leave it alone. */
export interface PinRecord {
  /** What the user pinned, normalised: `docker.io/library/nginx:1`, or `sha256:<id>`. */
  name: string;
  /** The image manifest the pin holds. */
  manifest: Digest;
  note: string;
  createdAt: number;
  /** After this (ms since epoch) the pin no longer protects anything. */
  expiresAt?: number;
}

/** What one garbage collection did; the catalog keeps the latest ones. */
export interface GcReport {
  id: string;
  trigger: 'manual' | 'schedule' | 'prune';
  dryRun: boolean;
  graceMs: number;
  startedAt: number;
  durationMs: number;
  examined: { blobs: number; bytes: number };
  kept: { blobs: number; bytes: number };
  deleted: { blobs: number; bytes: number };
  /** Files found in the blob store without a catalog record (left by a crash). */
  orphans: { blobs: number; bytes: number };
  /**
   * Temp files or staging objects of writes that died halfway, removed by a full collection;
   * absent from collections that do not sweep them (prune's) and from older reports.
   */
  staging?: { files: number; bytes: number };
  errors: string[];
}

/** An API token as stored: never the token itself, only its SHA-256. */
export interface TokenRecord {
  /** Short public handle (the first 12 hex digits of the hash), for `token ls` and `revoke`. */
  id: string;
  /** Hex SHA-256 of the whole token text (`ic_...`); the lookup key. */
  hash: string;
  name: string;
  scope: Scope;
  createdAt: number;
  lastUsedAt?: number;
}

export type JobKind = 'pull' | 'load' | 'export';
export type JobStatus = 'queued' | 'running' | 'succeeded' | 'failed';

/** One line of Docker's progress stream, as a job keeps it (the pull's ProgressMessage). */
export interface JobMessage {
  status: string;
  id?: string;
  progressDetail?: { current?: number; total?: number };
}

/**
 * A job's progress, compacted (lib/jobs/progress-log.ts): the latest message per id in
 * first-seen order, then the latest status lines; `linesSeen` counts every status line ever
 * recorded so a follower knows which of `lines` it has not sent yet. Callers keep it below
 * MAX_JOB_PROGRESS_BYTES so a DynamoDB item stays far below its 400 KB.
 */
export interface JobProgress {
  layers: JobMessage[];
  lines: JobMessage[];
  linesSeen: number;
}

export const MAX_JOB_PROGRESS_BYTES = 64 * 1024;

export type JobRequest =
  | { kind: 'pull'; reference: string; platform?: string }
  /** The upload is complete (PresignedUploads.completeUpload): its id opens it without parts. */
  | { kind: 'load'; uploadId: string }
  /** A save's export to storage; the names as the client gave them, resolved by the runner. */
  | { kind: 'export'; names: string[] };

export type JobResult =
  | { kind: 'pull'; imageId: Digest; manifest: Digest; source: Digest }
  | { kind: 'load'; messages: string[] }
  /**
   * The export's content key (SaveExports.find) and size: a presigned URL expires, so one is
   * signed whenever the job is answered.
   */
  | { kind: 'export'; key: string; size: number };

export interface JobError {
  message: string;
  /** The HTTP status the same failure gets when it happens inside a request. */
  status: number;
  code: string;
}

/** Pulls, loads and save exports that outlive the front door's time limit, run by a worker. */
export interface JobRecord {
  /** Random and unguessable: knowing it is what lets a client follow the job. */
  id: string;
  kind: JobKind;
  /**
   * Single-flight key: one active job per key (pull: reference + platform; load: upload id;
   * export: the export's content key).
   */
  key: string;
  request: JobRequest;
  status: JobStatus;
  progress: JobProgress;
  result?: JobResult;
  error?: JobError;
  createdAt: number;
  updatedAt: number;
  /** Who runs it, until when: a worker that dies leaves a lease that runs out. */
  lease?: { owner: string; until: number };
  /** When the record may be deleted (DynamoDB TTL); set at creation and again at the end. */
  expiresAt: number;
}

export interface NewJob {
  id: string;
  kind: JobKind;
  key: string;
  request: JobRequest;
  now: number;
  expiresAt: number;
}

export type JobOutcome =
  | { status: 'succeeded'; result: JobResult }
  | { status: 'failed'; error: JobError };

/** A lease asked for at `now` by `owner`, to hold a job until `until` (epoch ms). */
export interface LeaseTerms {
  owner: string;
  now: number;
  until: number;
}

/** How a job ended, with its last progress; `expiresAt` is its TTL from then on. */
export type JobEnd = JobOutcome & { progress: JobProgress; now: number; expiresAt: number };

export interface ImageCommit {
  /** Manifests to store (an index and/or an image manifest); existing ones are kept as is. */
  manifests: ManifestRecord[];
  /** Every blob the image needs. Each must be live; each is touched in the same transaction. */
  blobs: Digest[];
  tag?: Omit<TagRecord, 'updatedAt' | 'checkedAt'>;
  digestRef?: Omit<DigestRefRecord, 'createdAt'>;
  now: number;
}

/**
 * Tags, manifests and blob records. Implementations make `commitImage` atomic: either the tag,
 * the manifests and the blob touches all happen, or none does (invariant 2).
 */
export interface Catalog {
  getBlob(digest: Digest): Promise<BlobRecord | undefined>;
  /**
   * Conditional touch: when the record is live, bumps generation and touchedAt and answers
   * 'live'; 'deleting' means the collector owns it (treat as absent, wait); 'absent' means no
   * record.
   */
  touchBlob(digest: Digest, now: number): Promise<'live' | 'deleting' | 'absent'>;
  /**
   * Records a blob as live after its bytes were stored. Inserts when no record exists (or
   * touches a live one, filling a missing unpackedSize or diffId); answers 'deleting' when the
   * collector holds it, in which case the caller waits and stores the bytes again.
   */
  addBlob(
    blob: { digest: Digest; size: number; unpackedSize?: number; diffId?: Digest },
    now: number,
  ): Promise<'live' | 'deleting'>;
  /**
   * Fills what a live layer record does not know yet (read from its stored bytes). Never
   * creates a record: only the writer that just stored the bytes may (a record stands for
   * bytes that exist). Answers whether the record was live.
   */
  fillLayerFacts(
    digest: Digest,
    facts: { unpackedSize?: number; diffId?: Digest },
  ): Promise<boolean>;

  /** Atomically stores manifests, touches blobs and sets the tag; BlobNotLiveError otherwise. */
  commitImage(commit: ImageCommit): Promise<void>;

  getManifest(digest: Digest): Promise<ManifestRecord | undefined>;
  /** Image manifests whose config digest (the image ID) or own digest starts with the hex. */
  findImages(hexPrefix: string): Promise<ManifestRecord[]>;
  /** Every image manifest (not indexes), for `docker image ls`. */
  listImages(): Promise<ManifestRecord[]>;
  touchManifest(digest: Digest, now: number): Promise<void>;

  getTag(repository: RepositoryName, tag: string): Promise<TagRecord | undefined>;
  listTags(): Promise<TagRecord[]>;
  markTagChecked(repository: RepositoryName, tag: string, now: number): Promise<void>;

  getDigestRef(repository: RepositoryName, digest: Digest): Promise<DigestRefRecord | undefined>;
  listDigestRefs(): Promise<DigestRefRecord[]>;

  // --- removal (docker rmi, prune) ---

  /** Every manifest, indexes included: the roots of the collector's mark phase. */
  listManifests(): Promise<ManifestRecord[]>;
  /** Removes a tag; answers the removed record, or undefined when there was none. */
  deleteTag(repository: RepositoryName, tag: string): Promise<TagRecord | undefined>;
  deleteDigestRef(repository: RepositoryName, digest: Digest): Promise<DigestRefRecord | undefined>;
  /**
   * Atomically deletes a manifest record, but only while nothing refers to it: no tag or
   * digest ref names it (as `manifest`, or as `source`/`digest` for an index) and no pin holds
   * it. A pull that re-tags the image concurrently therefore either keeps it or re-inserts it.
   */
  deleteManifestIfUnreferenced(digest: Digest): Promise<boolean>;

  // --- pins ---

  putPin(pin: PinRecord): Promise<void>;
  deletePin(name: string): Promise<PinRecord | undefined>;
  listPins(): Promise<PinRecord[]>;

  // --- garbage collection (the blob state machine) ---

  listBlobs(): Promise<BlobRecord[]>;
  /** Conditional live -> deleting, only if the generation is still the one observed. */
  beginBlobDeletion(digest: Digest, expectedGeneration: number): Promise<boolean>;
  /** deleting -> gone: removes the record, only while it is in state deleting. */
  finishBlobDeletion(digest: Digest): Promise<void>;
  /**
   * For a stored file without any record (a crash between write and record): inserts a record
   * in state deleting if none exists, so writers wait while the collector removes the file.
   */
  claimOrphanBlob(digest: Digest, size: number, now: number): Promise<boolean>;
  putGcReport(report: GcReport): Promise<void>;
  /** Newest first. */
  listGcReports(limit: number): Promise<GcReport[]>;

  // --- API tokens (access control)

  /** Stores a new token; ConflictError when one with the same hash exists. */
  putToken(token: TokenRecord): Promise<void>;
  getTokenByHash(hash: string): Promise<TokenRecord | undefined>;
  /** Ordered by name, then id. */
  listTokens(): Promise<TokenRecord[]>;
  /** Removes the token with this id; answers the removed record, or undefined. */
  deleteToken(id: string): Promise<TokenRecord | undefined>;
  /** Records a use; never brings back a token that was deleted meanwhile. */
  touchToken(hash: string, now: number): Promise<void>;

  // --- jobs (lib/jobs/): each change one conditional write or transaction

  /**
   * Single flight per key, atomically: answers the active (queued or running) job of the key
   * when there is one (`created: false`, however stale), else stores `job` as queued and makes
   * it the key's active job (`created: true`).
   */
  createOrJoinJob(job: NewJob): Promise<{ job: JobRecord; created: boolean }>;
  getJob(id: string): Promise<JobRecord | undefined>;
  /**
   * Takes the job for `lease.owner` until `lease.until`: only when it is queued, or running under a
   * lease that ran out before `lease.now` (a dead worker) or already held by `owner`. Answers the job
   * as claimed, or undefined when it is not claimable.
   */
  claimJob(id: string, lease: LeaseTerms): Promise<JobRecord | undefined>;
  /** Stores progress and extends the lease; false when `owner` no longer holds the job. */
  recordJobProgress(id: string, lease: LeaseTerms, progress: JobProgress): Promise<boolean>;
  /**
   * Ends a running job held by `owner` and frees its key for the next job; false when the
   * lease was lost (another worker took over).
   */
  finishJob(id: string, owner: string, end: JobEnd): Promise<boolean>;
}
