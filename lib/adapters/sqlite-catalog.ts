import Database from 'better-sqlite3';
import type { Scope } from '../auth/scopes.ts';
import type { Digest } from '../digest.ts';
import { BlobNotLiveError, ConflictError, NotFoundError } from '../errors.ts';
import type { RepositoryName } from '../model.ts';
import type {
  BlobRecord,
  BlobState,
  Catalog,
  DigestRefRecord,
  GcReport,
  ImageCommit,
  ImageSummary,
  JobEnd,
  JobProgress,
  JobRecord,
  LeaseTerms,
  ManifestRecord,
  NewJob,
  PinRecord,
  TagRecord,
  TokenRecord,
} from '../ports/catalog.ts';
import { JOBS_MIGRATION, SqliteJobs } from './sqlite/jobs.ts';

/**
 * Schema versions, applied in order and recorded in PRAGMA user_version. Append, never edit:
 * a file written by an older build migrates forward from the version it records.
 */
const MIGRATIONS: readonly string[] = [
  `CREATE TABLE manifests (
     digest TEXT PRIMARY KEY,
     media_type TEXT NOT NULL,
     raw BLOB NOT NULL,
     blobs TEXT NOT NULL,
     children TEXT NOT NULL,
     image TEXT,
     config_digest TEXT,
     created_at INTEGER NOT NULL,
     last_used_at INTEGER NOT NULL
   ) WITHOUT ROWID;
   CREATE INDEX manifests_config_digest ON manifests (config_digest);
   CREATE TABLE tags (
     repository TEXT NOT NULL,
     tag TEXT NOT NULL,
     manifest TEXT NOT NULL,
     source TEXT NOT NULL,
     platform TEXT,
     updated_at INTEGER NOT NULL,
     checked_at INTEGER NOT NULL,
     PRIMARY KEY (repository, tag)
   ) WITHOUT ROWID;
   CREATE TABLE digest_refs (
     repository TEXT NOT NULL,
     digest TEXT NOT NULL,
     manifest TEXT NOT NULL,
     created_at INTEGER NOT NULL,
     PRIMARY KEY (repository, digest)
   ) WITHOUT ROWID;
   CREATE TABLE blobs (
     digest TEXT PRIMARY KEY,
     size INTEGER NOT NULL,
     unpacked_size INTEGER,
     state TEXT NOT NULL CHECK (state IN ('live', 'deleting')),
     generation INTEGER NOT NULL,
     touched_at INTEGER NOT NULL
   ) WITHOUT ROWID;`,
  // 2: removal, pins and GC reports. The reverse indexes let deleteManifestIfUnreferenced
  // check every kind of reference without a table scan.
  `CREATE INDEX tags_manifest ON tags (manifest);
   CREATE INDEX tags_source ON tags (source);
   CREATE INDEX digest_refs_manifest ON digest_refs (manifest);
   CREATE INDEX digest_refs_digest ON digest_refs (digest);
   CREATE TABLE pins (
     name TEXT PRIMARY KEY,
     manifest TEXT NOT NULL,
     note TEXT NOT NULL,
     created_at INTEGER NOT NULL,
     expires_at INTEGER
   ) WITHOUT ROWID;
   CREATE INDEX pins_manifest ON pins (manifest);
   CREATE TABLE gc_reports (
     seq INTEGER PRIMARY KEY AUTOINCREMENT,
     id TEXT NOT NULL UNIQUE,
     report TEXT NOT NULL
   );
   -- A re-created blob record must never repeat a generation its previous life had: a
   -- collector holding a stale snapshot would otherwise win its conditional transition
   -- against a writer that re-added and re-committed the blob (ABA). New records start above
   -- the highest generation any deleted record reached.
   CREATE TABLE blob_generation_floor (
     id INTEGER PRIMARY KEY CHECK (id = 1),
     value INTEGER NOT NULL
   );
   INSERT INTO blob_generation_floor (id, value) VALUES (1, 0);
   CREATE TRIGGER blobs_generation_floor AFTER DELETE ON blobs BEGIN
     UPDATE blob_generation_floor SET value = MAX(value, OLD.generation) WHERE id = 1;
   END;`,
  // 3: API tokens, keyed by the hash of the token (the token itself is never stored).
  `CREATE TABLE tokens (
     hash TEXT PRIMARY KEY,
     id TEXT NOT NULL UNIQUE,
     name TEXT NOT NULL,
     scope TEXT NOT NULL,
     created_at INTEGER NOT NULL,
     last_used_at INTEGER
   ) WITHOUT ROWID;`,
  // 4: background jobs (pulls and loads past the front door's time limit).
  JOBS_MIGRATION,
  // 5: what a layer unpacks to, so a config's diff_ids are checked against cached layers too.
  'ALTER TABLE blobs ADD COLUMN diff_id TEXT;',
];

/** The schema version this build writes (PRAGMA user_version). */
export const SCHEMA_VERSION = MIGRATIONS.length;

/** GC reports kept; older ones are dropped as new ones arrive. */
const GC_REPORTS_KEPT = 100;

/** Several processes (server, CLI prune) may share the file; wait rather than fail on a lock. */
const BUSY_TIMEOUT_MS = 10_000;

interface ManifestRow {
  digest: string;
  media_type: string;
  raw: Buffer;
  blobs: string;
  children: string;
  image: string | null;
  created_at: number;
  last_used_at: number;
}

interface TagRow {
  repository: string;
  tag: string;
  manifest: string;
  source: string;
  platform: string | null;
  updated_at: number;
  checked_at: number;
}

interface DigestRefRow {
  repository: string;
  digest: string;
  manifest: string;
  created_at: number;
}

interface GroupedWrite {
  run(): unknown;
  resolve(value: unknown): void;
  reject(error: unknown): void;
}

interface PinRow {
  name: string;
  manifest: string;
  note: string;
  created_at: number;
  expires_at: number | null;
}

interface TokenRow {
  hash: string;
  id: string;
  name: string;
  scope: Scope;
  created_at: number;
  last_used_at: number | null;
}

interface BlobRow {
  digest: string;
  size: number;
  unpacked_size: number | null;
  diff_id: string | null;
  state: BlobState;
  generation: number;
  touched_at: number;
}

/**
 * The catalog in one SQLite file (`<data>/catalog.db`, or ':memory:' for tests). Every state
 * change of a blob record is a single conditional statement (`... WHERE state = 'live'`), the
 * same shape as a DynamoDB conditional write, so both adapters share one GC protocol.
 */
export class SqliteCatalog implements Catalog {
  readonly #db: Database.Database;
  readonly #statements = new Map<string, Database.Statement>();
  readonly #commitTx: Database.Transaction<(commit: ImageCommit) => void>;
  readonly #deleteManifestTx: Database.Transaction<(digest: Digest) => boolean>;
  readonly #putGcReportTx: Database.Transaction<(report: GcReport) => void>;
  readonly #grouped: GroupedWrite[] = [];
  readonly #groupTx: Database.Transaction<(batch: GroupedWrite[]) => unknown[]>;
  readonly #jobs: SqliteJobs;

  constructor(path: string) {
    this.#db = new Database(path);
    // busy_timeout first: switching to WAL itself needs a lock another process may hold.
    this.#db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
    this.#db.pragma('journal_mode = WAL');
    // A commit the API acknowledged must survive power loss, not just a process crash.
    this.#db.pragma('synchronous = FULL');
    this.#migrate();
    this.#commitTx = this.#db.transaction((commit: ImageCommit) => this.#commitInTx(commit));
    this.#deleteManifestTx = this.#db.transaction((digest: Digest) =>
      this.#deleteManifestInTx(digest),
    );
    this.#putGcReportTx = this.#db.transaction((report: GcReport) => this.#putGcReportInTx(report));
    this.#groupTx = this.#db.transaction((batch: GroupedWrite[]) => batch.map((w) => w.run()));
    this.#jobs = new SqliteJobs(this.#db);
  }

  /**
   * Group commit for the collector's transitions: statements issued in the same tick (the
   * collector starts a chunk of them at once) share one transaction and so one fsync, instead
   * of one each with synchronous=FULL. Every statement stays its own conditional write; only
   * durability is shared, and no caller hears its answer before the commit.
   */
  #group<T>(run: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.#grouped.push({ run, resolve: resolve as (value: unknown) => void, reject });
      if (this.#grouped.length === 1) queueMicrotask(() => this.#flushGroup());
    });
  }

  #flushGroup(): void {
    const batch = this.#grouped.splice(0);
    let results: unknown[];
    try {
      results = this.#groupTx.immediate(batch);
    } catch (error) {
      for (const write of batch) write.reject(error);
      return;
    }
    batch.forEach((write, i) => {
      write.resolve(results[i]);
    });
  }

  close(): void {
    this.#db.close();
  }

  #migrate(): void {
    const apply = this.#db.transaction(() => {
      // Read under the write lock: two processes opening a fresh file must not both migrate.
      const version = this.#db.pragma('user_version', { simple: true }) as number;
      if (version > MIGRATIONS.length) {
        throw new Error(
          `catalog schema version ${version} is newer than this build knows (${MIGRATIONS.length})`,
        );
      }
      for (const sql of MIGRATIONS.slice(version)) this.#db.exec(sql);
      this.#db.pragma(`user_version = ${MIGRATIONS.length}`);
    });
    apply.immediate();
  }

  /** Prepared once per SQL text; better-sqlite3 statements are reusable and cheap to keep. */
  #sql<T = unknown>(source: string): Database.Statement<unknown[], T> {
    let statement = this.#statements.get(source);
    if (!statement) {
      statement = this.#db.prepare(source);
      this.#statements.set(source, statement);
    }
    return statement as Database.Statement<unknown[], T>;
  }

  async getBlob(digest: Digest): Promise<BlobRecord | undefined> {
    const row = this.#sql<BlobRow>('SELECT * FROM blobs WHERE digest = ?').get(digest);
    return row && toBlob(row);
  }

  async touchBlob(digest: Digest, now: number): Promise<'live' | 'deleting' | 'absent'> {
    if (this.#touch(digest, now)) return 'live';
    const row = this.#sql<BlobRow>('SELECT state FROM blobs WHERE digest = ?').get(digest);
    return row?.state === 'deleting' ? 'deleting' : 'absent';
  }

  #touch(digest: Digest, now: number): boolean {
    const result = this.#sql(
      `UPDATE blobs SET generation = generation + 1, touched_at = ?
       WHERE digest = ? AND state = 'live'`,
    ).run(ms(now), digest);
    return result.changes === 1;
  }

  async addBlob(
    blob: { digest: Digest; size: number; unpackedSize?: number; diffId?: Digest },
    now: number,
  ): Promise<'live' | 'deleting'> {
    // One statement: insert, or touch a live record; the WHERE leaves a deleting one untouched
    // (changes = 0), which is the answer 'deleting'.
    const result = this.#sql(
      `INSERT INTO blobs (digest, size, unpacked_size, diff_id, state, generation, touched_at)
       VALUES (?, ?, ?, ?, 'live', (SELECT value + 1 FROM blob_generation_floor), ?)
       ON CONFLICT (digest) DO UPDATE SET
         generation = generation + 1,
         touched_at = excluded.touched_at,
         unpacked_size = COALESCE(unpacked_size, excluded.unpacked_size),
         diff_id = COALESCE(diff_id, excluded.diff_id)
       WHERE state = 'live'`,
    ).run(blob.digest, blob.size, blob.unpackedSize ?? null, blob.diffId ?? null, ms(now));
    return result.changes === 1 ? 'live' : 'deleting';
  }

  async fillLayerFacts(
    digest: Digest,
    facts: { unpackedSize?: number; diffId?: Digest },
  ): Promise<boolean> {
    const result = this.#sql(
      `UPDATE blobs SET unpacked_size = COALESCE(unpacked_size, ?), diff_id = COALESCE(diff_id, ?)
       WHERE digest = ? AND state = 'live'`,
    ).run(facts.unpackedSize ?? null, facts.diffId ?? null, digest);
    return result.changes === 1;
  }

  async commitImage(commit: ImageCommit): Promise<void> {
    // IMMEDIATE takes the write lock before the liveness reads, so no collector can flip a
    // blob to deleting between the check and the touches.
    this.#commitTx.immediate(commit);
  }

  #commitInTx(commit: ImageCommit): void {
    const now = ms(commit.now);
    const stored = new Set(commit.manifests.map((m) => m.digest));
    const referenced = [commit.tag?.manifest, commit.digestRef?.manifest].filter(
      (d): d is Digest => d !== undefined,
    );
    // Invariant 2 is enforced here, not trusted to callers: the blobs of every manifest the
    // commit stores or points a name at must be live, not only those listed in `blobs`.
    const required = new Set<Digest>(commit.blobs);
    for (const m of commit.manifests) for (const b of m.blobs) required.add(b);
    for (const digest of referenced) {
      if (stored.has(digest)) continue;
      const row = this.#sql<ManifestRow>('SELECT blobs FROM manifests WHERE digest = ?').get(
        digest,
      );
      if (!row) throw new NotFoundError(`manifest ${digest} is not stored`);
      for (const b of JSON.parse(row.blobs) as Digest[]) required.add(b);
    }

    const stateOf = this.#sql<BlobRow>('SELECT state FROM blobs WHERE digest = ?');
    const notLive = [...required].filter((d) => stateOf.get(d)?.state !== 'live').sort();
    if (notLive.length > 0) throw new BlobNotLiveError(notLive);

    const insertManifest = this.#sql(
      `INSERT INTO manifests (digest, media_type, raw, blobs, children, image, config_digest,
                                created_at, last_used_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (digest) DO NOTHING`,
    );
    for (const m of commit.manifests) {
      insertManifest.run(
        m.digest,
        m.mediaType,
        Buffer.from(m.raw.buffer, m.raw.byteOffset, m.raw.byteLength),
        JSON.stringify(m.blobs),
        JSON.stringify(m.children),
        m.image ? JSON.stringify(m.image) : null,
        m.image?.configDigest ?? null,
        ms(m.createdAt),
        now,
      );
    }
    const useManifest = this.#sql('UPDATE manifests SET last_used_at = ? WHERE digest = ?');
    for (const digest of new Set([...stored, ...referenced])) useManifest.run(now, digest);
    for (const digest of required) this.#touch(digest, now);

    if (commit.tag) {
      const t = commit.tag;
      this.#sql(
        `INSERT INTO tags (repository, tag, manifest, source, platform, updated_at, checked_at)
           VALUES (?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT (repository, tag) DO UPDATE SET manifest = excluded.manifest,
             source = excluded.source, platform = excluded.platform,
             updated_at = excluded.updated_at, checked_at = excluded.checked_at`,
      ).run(t.repository, t.tag, t.manifest, t.source, t.platform ?? null, now, now);
    }
    if (commit.digestRef) {
      const r = commit.digestRef;
      // createdAt stays as first recorded; the manifest may move (another platform's pull).
      this.#sql(
        `INSERT INTO digest_refs (repository, digest, manifest, created_at) VALUES (?, ?, ?, ?)
           ON CONFLICT (repository, digest) DO UPDATE SET manifest = excluded.manifest`,
      ).run(r.repository, r.digest, r.manifest, now);
    }
  }

  async getManifest(digest: Digest): Promise<ManifestRecord | undefined> {
    const row = this.#sql<ManifestRow>('SELECT * FROM manifests WHERE digest = ?').get(digest);
    return row && toManifest(row);
  }

  async findImages(hexPrefix: string): Promise<ManifestRecord[]> {
    // Anything but 1-64 lowercase hex matches nothing: an empty prefix must not mean "all".
    if (!/^[a-f0-9]{1,64}$/.test(hexPrefix)) return [];
    // Half-open ranges instead of LIKE so both primary key and index serve the lookup;
    // 'g' sorts after every hex digit.
    const low = `sha256:${hexPrefix}`;
    const high = `sha256:${hexPrefix}g`;
    return this.#sql<ManifestRow>(
      `SELECT * FROM manifests WHERE image IS NOT NULL AND
         ((config_digest >= ? AND config_digest < ?) OR (digest >= ? AND digest < ?))
       ORDER BY created_at DESC, digest`,
    )
      .all(low, high, low, high)
      .map(toManifest);
  }

  async listImages(): Promise<ManifestRecord[]> {
    return this.#sql<ManifestRow>(
      'SELECT * FROM manifests WHERE image IS NOT NULL ORDER BY created_at DESC, digest',
    )
      .all()
      .map(toManifest);
  }

  async touchManifest(digest: Digest, now: number): Promise<void> {
    this.#sql('UPDATE manifests SET last_used_at = ? WHERE digest = ?').run(ms(now), digest);
  }

  async getTag(repository: RepositoryName, tag: string): Promise<TagRecord | undefined> {
    const row = this.#sql<TagRow>('SELECT * FROM tags WHERE repository = ? AND tag = ?').get(
      repository,
      tag,
    );
    return row && toTag(row);
  }

  async listTags(): Promise<TagRecord[]> {
    return this.#sql<TagRow>('SELECT * FROM tags ORDER BY repository, tag').all().map(toTag);
  }

  async markTagChecked(repository: RepositoryName, tag: string, now: number): Promise<void> {
    this.#sql('UPDATE tags SET checked_at = ? WHERE repository = ? AND tag = ?').run(
      ms(now),
      repository,
      tag,
    );
  }

  async getDigestRef(
    repository: RepositoryName,
    digest: Digest,
  ): Promise<DigestRefRecord | undefined> {
    const row = this.#sql<DigestRefRow>(
      'SELECT * FROM digest_refs WHERE repository = ? AND digest = ?',
    ).get(repository, digest);
    return row && toDigestRef(row);
  }

  async listDigestRefs(): Promise<DigestRefRecord[]> {
    return this.#sql<DigestRefRow>('SELECT * FROM digest_refs ORDER BY repository, digest')
      .all()
      .map(toDigestRef);
  }

  // --- removal (docker rmi, prune)

  async listManifests(): Promise<ManifestRecord[]> {
    return this.#sql<ManifestRow>('SELECT * FROM manifests ORDER BY digest').all().map(toManifest);
  }

  async deleteTag(repository: RepositoryName, tag: string): Promise<TagRecord | undefined> {
    const row = this.#sql<TagRow>(
      'DELETE FROM tags WHERE repository = ? AND tag = ? RETURNING *',
    ).get(repository, tag);
    return row && toTag(row);
  }

  async deleteDigestRef(
    repository: RepositoryName,
    digest: Digest,
  ): Promise<DigestRefRecord | undefined> {
    const row = this.#sql<DigestRefRow>(
      'DELETE FROM digest_refs WHERE repository = ? AND digest = ? RETURNING *',
    ).get(repository, digest);
    return row && toDigestRef(row);
  }

  async deleteManifestIfUnreferenced(digest: Digest): Promise<boolean> {
    // IMMEDIATE: the reference checks and the delete see one state, even across processes, so
    // a commit that re-tags the manifest lands either before (kept) or after (re-inserted).
    return this.#deleteManifestTx.immediate(digest);
  }

  #deleteManifestInTx(digest: Digest): boolean {
    // Any pin counts, expired or not: expired pins are removed by retention, not ignored here.
    const result = this.#sql(
      `DELETE FROM manifests WHERE digest = @d
         AND NOT EXISTS (SELECT 1 FROM tags WHERE manifest = @d OR source = @d)
         AND NOT EXISTS (SELECT 1 FROM digest_refs WHERE manifest = @d OR digest = @d)
         AND NOT EXISTS (SELECT 1 FROM pins WHERE manifest = @d)`,
    ).run({ d: digest });
    return result.changes === 1;
  }

  // --- pins

  async putPin(pin: PinRecord): Promise<void> {
    this.#sql(
      `INSERT INTO pins (name, manifest, note, created_at, expires_at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (name) DO UPDATE SET manifest = excluded.manifest, note = excluded.note,
           created_at = excluded.created_at, expires_at = excluded.expires_at`,
    ).run(
      pin.name,
      pin.manifest,
      pin.note,
      ms(pin.createdAt),
      pin.expiresAt === undefined ? null : ms(pin.expiresAt),
    );
  }

  async deletePin(name: string): Promise<PinRecord | undefined> {
    const row = this.#sql<PinRow>('DELETE FROM pins WHERE name = ? RETURNING *').get(name);
    return row && toPin(row);
  }

  async listPins(): Promise<PinRecord[]> {
    return this.#sql<PinRow>('SELECT * FROM pins ORDER BY name').all().map(toPin);
  }

  // --- garbage collection (each transition is one conditional statement, as in DynamoDB)

  async listBlobs(): Promise<BlobRecord[]> {
    return this.#sql<BlobRow>('SELECT * FROM blobs ORDER BY digest').all().map(toBlob);
  }

  /**
   * live -> deleting, only if nobody touched the blob since the collector read `generation`.
   * Answers false when a writer won (touched, re-added) or the record is gone or already deleting.
   */
  beginBlobDeletion(digest: Digest, expectedGeneration: number): Promise<boolean> {
    return this.#group(() => {
      const result = this.#sql(
        `UPDATE blobs SET state = 'deleting'
         WHERE digest = ? AND state = 'live' AND generation = ?`,
      ).run(digest, expectedGeneration);
      return result.changes === 1;
    });
  }

  /** deleting -> gone, after the bytes were removed; a live record is never dropped here. */
  finishBlobDeletion(digest: Digest): Promise<void> {
    return this.#group(() => {
      this.#sql(`DELETE FROM blobs WHERE digest = ? AND state = 'deleting'`).run(digest);
    });
  }

  claimOrphanBlob(digest: Digest, size: number, now: number): Promise<boolean> {
    // A writer that recorded the blob meanwhile wins: DO NOTHING leaves its live record alone.
    return this.#group(() => {
      const result = this.#sql(
        `INSERT INTO blobs (digest, size, unpacked_size, state, generation, touched_at)
       VALUES (?, ?, NULL, 'deleting', (SELECT value + 1 FROM blob_generation_floor), ?)
       ON CONFLICT (digest) DO NOTHING`,
      ).run(digest, size, ms(now));
      return result.changes === 1;
    });
  }

  async putGcReport(report: GcReport): Promise<void> {
    this.#putGcReportTx.immediate(report);
  }

  #putGcReportInTx(report: GcReport): void {
    // Re-storing a report id replaces it and makes it the newest.
    this.#sql('DELETE FROM gc_reports WHERE id = ?').run(report.id);
    this.#sql('INSERT INTO gc_reports (id, report) VALUES (?, ?)').run(
      report.id,
      JSON.stringify(report),
    );
    this.#sql(
      `DELETE FROM gc_reports WHERE seq <= (SELECT seq FROM gc_reports ORDER BY seq DESC
         LIMIT 1 OFFSET ?)`,
    ).run(GC_REPORTS_KEPT);
  }

  async listGcReports(limit: number): Promise<GcReport[]> {
    const rows = this.#sql<{ report: string }>(
      'SELECT report FROM gc_reports ORDER BY seq DESC LIMIT ?',
    ).all(Math.max(0, Math.trunc(limit)));
    return rows.map((row) => JSON.parse(row.report) as GcReport);
  }

  // --- API tokens

  async putToken(token: TokenRecord): Promise<void> {
    try {
      this.#sql(
        `INSERT INTO tokens (hash, id, name, scope, created_at, last_used_at)
         VALUES (?, ?, ?, ?, ?, ?)`,
      ).run(
        token.hash,
        token.id,
        token.name,
        token.scope,
        ms(token.createdAt),
        token.lastUsedAt === undefined ? null : ms(token.lastUsedAt),
      );
    } catch (error) {
      if ((error as { code?: string }).code?.startsWith('SQLITE_CONSTRAINT')) {
        throw new ConflictError(`a token with id ${token.id} already exists`);
      }
      throw error;
    }
  }

  async getTokenByHash(hash: string): Promise<TokenRecord | undefined> {
    const row = this.#sql<TokenRow>('SELECT * FROM tokens WHERE hash = ?').get(hash);
    return row && toToken(row);
  }

  async listTokens(): Promise<TokenRecord[]> {
    return this.#sql<TokenRow>('SELECT * FROM tokens ORDER BY name, id').all().map(toToken);
  }

  async deleteToken(id: string): Promise<TokenRecord | undefined> {
    const row = this.#sql<TokenRow>('DELETE FROM tokens WHERE id = ? RETURNING *').get(id);
    return row && toToken(row);
  }

  async touchToken(hash: string, now: number): Promise<void> {
    this.#sql('UPDATE tokens SET last_used_at = ? WHERE hash = ?').run(ms(now), hash);
  }

  // --- jobs (sqlite/jobs.ts)

  createOrJoinJob(job: NewJob): Promise<{ job: JobRecord; created: boolean }> {
    return this.#jobs.createOrJoin(job);
  }

  getJob(id: string): Promise<JobRecord | undefined> {
    return this.#jobs.get(id);
  }

  claimJob(id: string, lease: LeaseTerms): Promise<JobRecord | undefined> {
    return this.#jobs.claim(id, lease);
  }

  recordJobProgress(id: string, lease: LeaseTerms, progress: JobProgress): Promise<boolean> {
    return this.#jobs.recordProgress(id, lease, progress);
  }

  finishJob(id: string, owner: string, end: JobEnd): Promise<boolean> {
    return this.#jobs.finish(id, owner, end);
  }
}

/** Timestamps are integer milliseconds; a fractional Date value must not become a REAL. */
const ms = Math.trunc;

// Optional fields are left out rather than set to undefined, so records compare strictly equal.
function toBlob(row: BlobRow): BlobRecord {
  return {
    digest: row.digest as Digest,
    size: row.size,
    ...(row.unpacked_size !== null && { unpackedSize: row.unpacked_size }),
    ...(row.diff_id !== null && { diffId: row.diff_id as Digest }),
    state: row.state,
    generation: row.generation,
    touchedAt: row.touched_at,
  };
}

function toManifest(row: ManifestRow): ManifestRecord {
  return {
    digest: row.digest as Digest,
    mediaType: row.media_type,
    raw: row.raw,
    blobs: JSON.parse(row.blobs) as Digest[],
    children: JSON.parse(row.children) as Digest[],
    ...(row.image !== null && { image: JSON.parse(row.image) as ImageSummary }),
    createdAt: row.created_at,
    lastUsedAt: row.last_used_at,
  };
}

function toTag(row: TagRow): TagRecord {
  return {
    repository: row.repository,
    tag: row.tag,
    manifest: row.manifest as Digest,
    source: row.source as Digest,
    ...(row.platform !== null && { platform: row.platform }),
    updatedAt: row.updated_at,
    checkedAt: row.checked_at,
  };
}

function toDigestRef(row: DigestRefRow): DigestRefRecord {
  return {
    repository: row.repository,
    digest: row.digest as Digest,
    manifest: row.manifest as Digest,
    createdAt: row.created_at,
  };
}

function toPin(row: PinRow): PinRecord {
  return {
    name: row.name,
    manifest: row.manifest as Digest,
    note: row.note,
    createdAt: row.created_at,
    ...(row.expires_at !== null && { expiresAt: row.expires_at }),
  };
}

function toToken(row: TokenRow): TokenRecord {
  return {
    id: row.id,
    hash: row.hash,
    name: row.name,
    scope: row.scope,
    createdAt: row.created_at,
    ...(row.last_used_at !== null && { lastUsedAt: row.last_used_at }),
  };
}
