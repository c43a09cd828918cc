/**
 * The catalog file's schema and how a file is opened: pragmas, then the migrations it has not
 * seen yet, under the write lock.
 */
import Database from 'better-sqlite3';
import { JOBS_MIGRATION } from './jobs.ts';
import { WATCHES_MIGRATION } from './watches.ts';

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
  // 6: blob -> manifest, so the collection after an rmi asks about its few blobs instead of
  // reading every manifest. Kept by triggers, in the transaction that inserts or deletes the
  // manifest, so it cannot drift; filled from the manifests a file already holds.
  `CREATE TABLE manifest_blobs (
     blob TEXT NOT NULL,
     manifest TEXT NOT NULL,
     PRIMARY KEY (blob, manifest)
   ) WITHOUT ROWID;
   INSERT OR IGNORE INTO manifest_blobs (blob, manifest)
     SELECT value, digest FROM manifests, json_each(manifests.blobs);
   CREATE TRIGGER manifest_blobs_insert AFTER INSERT ON manifests BEGIN
     INSERT OR IGNORE INTO manifest_blobs (blob, manifest)
       SELECT value, NEW.digest FROM json_each(NEW.blobs);
   END;
   CREATE TRIGGER manifest_blobs_delete AFTER DELETE ON manifests BEGIN
     DELETE FROM manifest_blobs WHERE manifest = OLD.digest;
   END;`,
  // 7: pulls per manifest, for the dashboard's image listing (issue 14).
  `ALTER TABLE manifests ADD COLUMN pulls INTEGER NOT NULL DEFAULT 0;`,
  // 8: the hourly history (issue 14), one row per hour and figure; `kind` is c(ounter) or
  // g(auge). The blob index lets /cache/stats count and sum live blobs without reading the rows.
  `CREATE TABLE stats_hours (
     hour INTEGER NOT NULL,
     kind TEXT NOT NULL CHECK (kind IN ('c', 'g')),
     name TEXT NOT NULL,
     value REAL NOT NULL,
     PRIMARY KEY (hour, kind, name)
   ) WITHOUT ROWID;
   CREATE INDEX blobs_state_size ON blobs (state, size);`,
  // 9: watched references (issue 15), the registries paused for their rate limit, and each
  // registry's background pulls per hour (rows older than a day are deleted on write).
  WATCHES_MIGRATION,
];

/** The schema version this build writes (PRAGMA user_version). */
export const SCHEMA_VERSION = MIGRATIONS.length;

/** Several processes (server, CLI prune) may share the file; wait rather than fail on a lock. */
const BUSY_TIMEOUT_MS = 10_000;

/** Opens (or creates) the catalog file and brings its schema up to SCHEMA_VERSION. */
export function openCatalogDb(path: string): Database.Database {
  const db = new Database(path);
  // busy_timeout first: switching to WAL itself needs a lock another process may hold.
  db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
  db.pragma('journal_mode = WAL');
  // A commit the API acknowledged must survive power loss, not just a process crash.
  db.pragma('synchronous = FULL');
  migrate(db);
  return db;
}

function migrate(db: Database.Database): void {
  const apply = db.transaction(() => {
    // Read under the write lock: two processes opening a fresh file must not both migrate.
    const version = db.pragma('user_version', { simple: true }) as number;
    if (version > MIGRATIONS.length) {
      throw new Error(
        `catalog schema version ${version} is newer than this build knows (${MIGRATIONS.length})`,
      );
    }
    for (const sql of MIGRATIONS.slice(version)) db.exec(sql);
    db.pragma(`user_version = ${MIGRATIONS.length}`);
  });
  apply.immediate();
}
