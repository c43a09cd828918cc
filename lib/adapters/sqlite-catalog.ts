import type Database from 'better-sqlite3';
import type { LiveStorageFigures } from '../ports/stats-log.ts';
import { ComposedCatalog } from './composed-catalog.ts';
import { SqliteGcReports } from './sqlite/gc-reports.ts';
import { GroupCommit } from './sqlite/group-commit.ts';
import { SqliteImageCatalog } from './sqlite/image-catalog.ts';
import { SqliteJobs } from './sqlite/jobs.ts';
import { Statements } from './sqlite/rows.ts';
import { openCatalogDb } from './sqlite/schema.ts';
import { SqliteStatsLog } from './sqlite/stats-log.ts';
import { SqliteTokens } from './sqlite/tokens.ts';
import { SqliteWatches } from './sqlite/watches.ts';

export { SCHEMA_VERSION } from './sqlite/schema.ts';

/**
 * The catalog in one SQLite file (`<data>/catalog.db`, or ':memory:' for tests): one connection
 * shared by the image catalog, jobs, tokens, GC reports, the stats history and watches (sqlite/), so a process holds one
 * write lock and one statement cache.
 */
export class SqliteCatalog extends ComposedCatalog implements LiveStorageFigures {
  readonly #db: Database.Database;
  readonly #stats: SqliteStatsLog;

  constructor(path: string) {
    const db = openCatalogDb(path);
    const statements = new Statements(db);
    const stats = new SqliteStatsLog(db, statements);
    super({
      images: new SqliteImageCatalog(db, statements, new GroupCommit(db)),
      jobs: new SqliteJobs(db),
      tokens: new SqliteTokens(statements),
      gcReports: new SqliteGcReports(db, statements),
      stats,
      watches: new SqliteWatches(db, statements),
    });
    this.#db = db;
    this.#stats = stats;
  }

  storageFigures() {
    return this.#stats.storageFigures();
  }

  close(): void {
    this.#db.close();
  }
}
