import type { Digest } from '../digest.ts';

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
  | {
      kind: 'pull';
      reference: string;
      platform?: string;
      /**
       * The front door whose client started it, for the hit and miss counts (the job key is
       * shared, so a job joined from the other door keeps the first one's); absent for the
       * registry door's fills, whose client requests were counted as they came.
       */
      door?: 'engine' | 'registry';
    }
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

/** A job to create: the record's identity and request, stamped `now`. */
export type NewJob = Pick<JobRecord, 'id' | 'kind' | 'key' | 'request' | 'expiresAt'> & {
  now: number;
};

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

/** Job records (lib/jobs/): each change one conditional write or transaction. */
export interface JobStore {
  /**
   * Single flight per key, atomically: answers the active (queued or running) job of the key
   * when there is one (`created: false`, however stale), else stores `job` as queued and makes
   * it the key's active job (`created: true`).
   */
  createOrJoinJob(job: NewJob): Promise<{ job: JobRecord; created: boolean }>;
  getJob(id: string): Promise<JobRecord | undefined>;
  /**
   * The newest jobs first (createdAt, then id), at most `limit`: the active ones and the ended
   * ones not yet past their expiresAt at `now`. For the dashboard; read by an index, not a scan.
   */
  listRecentJobs(limit: number, now: number): Promise<JobRecord[]>;
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
