/**
 * Job records in the SQLite catalog. Single flight is the file's own rule: a partial unique
 * index allows one queued-or-running job per key, and create-or-join reads and inserts inside
 * one IMMEDIATE transaction, so two processes sharing the file cannot both create.
 */
import type Database from 'better-sqlite3';
import type {
  JobEnd,
  JobError,
  JobKind,
  JobProgress,
  JobRecord,
  JobRequest,
  JobResult,
  JobStatus,
  JobStore,
  LeaseTerms,
  NewJob,
} from '../../ports/job-store.ts';
import { ms } from './rows.ts';

/** Schema version 4 of schema.ts's MIGRATIONS. */
export const JOBS_MIGRATION = `CREATE TABLE jobs (
     id TEXT PRIMARY KEY,
     kind TEXT NOT NULL,
     key TEXT NOT NULL,
     request TEXT NOT NULL,
     status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
     progress TEXT NOT NULL,
     result TEXT,
     error TEXT,
     created_at INTEGER NOT NULL,
     updated_at INTEGER NOT NULL,
     lease_owner TEXT,
     lease_until INTEGER,
     expires_at INTEGER NOT NULL
   ) WITHOUT ROWID;
   CREATE UNIQUE INDEX jobs_active_key ON jobs (key) WHERE status IN ('queued', 'running');
   CREATE INDEX jobs_expires_at ON jobs (expires_at);`;

interface JobRow {
  id: string;
  kind: JobKind;
  key: string;
  request: string;
  status: JobStatus;
  progress: string;
  result: string | null;
  error: string | null;
  created_at: number;
  updated_at: number;
  lease_owner: string | null;
  lease_until: number | null;
  expires_at: number;
}

export const EMPTY_PROGRESS: JobProgress = { layers: [], lines: [], linesSeen: 0 };

export class SqliteJobs implements JobStore {
  readonly #db: Database.Database;
  readonly #createOrJoinTx: Database.Transaction<
    (job: NewJob) => { row: JobRow; created: boolean }
  >;

  constructor(db: Database.Database) {
    this.#db = db;
    this.#createOrJoinTx = db.transaction((job: NewJob) => this.#createOrJoinInTx(job));
  }

  async createOrJoinJob(job: NewJob): Promise<{ job: JobRecord; created: boolean }> {
    const { row, created } = this.#createOrJoinTx.immediate(job);
    return { job: toJob(row), created };
  }

  #createOrJoinInTx(job: NewJob): { row: JobRow; created: boolean } {
    // What DynamoDB's TTL does for the other adapter: ended jobs past their expiry go.
    this.#db
      .prepare(`DELETE FROM jobs WHERE expires_at < ? AND status IN ('succeeded', 'failed')`)
      .run(ms(job.now));
    const active = this.#db
      .prepare<unknown[], JobRow>(
        `SELECT * FROM jobs WHERE key = ? AND status IN ('queued', 'running')`,
      )
      .get(job.key);
    if (active) return { row: active, created: false };
    const row = this.#db
      .prepare<unknown[], JobRow>(
        `INSERT INTO jobs (id, kind, key, request, status, progress, created_at, updated_at,
                           expires_at)
         VALUES (?, ?, ?, ?, 'queued', ?, ?, ?, ?) RETURNING *`,
      )
      .get(
        job.id,
        job.kind,
        job.key,
        JSON.stringify(job.request),
        JSON.stringify(EMPTY_PROGRESS),
        ms(job.now),
        ms(job.now),
        ms(job.expiresAt),
      );
    return { row: row!, created: true };
  }

  async getJob(id: string): Promise<JobRecord | undefined> {
    const row = this.#db.prepare<unknown[], JobRow>('SELECT * FROM jobs WHERE id = ?').get(id);
    return row && toJob(row);
  }

  async listRecentJobs(limit: number, now: number): Promise<JobRecord[]> {
    // The table holds only jobs within their expiry (and a few past it until the next create).
    return this.#db
      .prepare<unknown[], JobRow>(
        `SELECT * FROM jobs
           WHERE status IN ('queued', 'running') OR expires_at >= ?
           ORDER BY created_at DESC, id LIMIT ?`,
      )
      .all(ms(now), limit)
      .map(toJob);
  }

  async claimJob(id: string, lease: LeaseTerms): Promise<JobRecord | undefined> {
    const row = this.#db
      .prepare<unknown[], JobRow>(
        `UPDATE jobs SET status = 'running', lease_owner = @owner, lease_until = @until,
           updated_at = @now
         WHERE id = @id AND (status = 'queued' OR (status = 'running' AND
           (lease_until IS NULL OR lease_until < @now OR lease_owner = @owner)))
         RETURNING *`,
      )
      .get({ id, owner: lease.owner, now: ms(lease.now), until: ms(lease.until) });
    return row && toJob(row);
  }

  async recordJobProgress(id: string, lease: LeaseTerms, progress: JobProgress): Promise<boolean> {
    const result = this.#db
      .prepare(
        `UPDATE jobs SET progress = ?, updated_at = ?, lease_until = ?
         WHERE id = ? AND status = 'running' AND lease_owner = ?`,
      )
      .run(JSON.stringify(progress), ms(lease.now), ms(lease.until), id, lease.owner);
    return result.changes === 1;
  }

  async finishJob(id: string, owner: string, end: JobEnd): Promise<boolean> {
    // Leaving 'running' takes the row out of the partial unique index: the key is free.
    const result = this.#db
      .prepare(
        `UPDATE jobs SET status = ?, result = ?, error = ?, progress = ?, updated_at = ?,
           expires_at = ?, lease_owner = NULL, lease_until = NULL
         WHERE id = ? AND status = 'running' AND lease_owner = ?`,
      )
      .run(
        end.status,
        end.status === 'succeeded' ? JSON.stringify(end.result) : null,
        end.status === 'failed' ? JSON.stringify(end.error) : null,
        JSON.stringify(end.progress),
        ms(end.now),
        ms(end.expiresAt),
        id,
        owner,
      );
    return result.changes === 1;
  }
}

function toJob(row: JobRow): JobRecord {
  return {
    id: row.id,
    kind: row.kind,
    key: row.key,
    request: JSON.parse(row.request) as JobRequest,
    status: row.status,
    progress: JSON.parse(row.progress) as JobProgress,
    ...(row.result !== null && { result: JSON.parse(row.result) as JobResult }),
    ...(row.error !== null && { error: JSON.parse(row.error) as JobError }),
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    ...(row.lease_owner !== null &&
      row.lease_until !== null && { lease: { owner: row.lease_owner, until: row.lease_until } }),
    expiresAt: row.expires_at,
  };
}
