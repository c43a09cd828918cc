import type Database from 'better-sqlite3';
import { ComposedCatalog } from './composed-catalog.ts';
import { SqliteGcReports } from './sqlite/gc-reports.ts';
import { GroupCommit } from './sqlite/group-commit.ts';
import { SqliteImageCatalog } from './sqlite/image-catalog.ts';
import { SqliteJobs } from './sqlite/jobs.ts';
import { Statements } from './sqlite/rows.ts';
import { openCatalogDb } from './sqlite/schema.ts';
import { SqliteTokens } from './sqlite/tokens.ts';

export { SCHEMA_VERSION } from './sqlite/schema.ts';

/**
 * The catalog in one SQLite file (`<data>/catalog.db`, or ':memory:' for tests): one connection
 * shared by the image catalog, jobs, tokens and GC reports (sqlite/), so a process holds one
 * write lock and one statement cache.
 */
export class SqliteCatalog extends ComposedCatalog {
  readonly #db: Database.Database;

  constructor(path: string) {
    const db = openCatalogDb(path);
    const statements = new Statements(db);
    super({
      images: new SqliteImageCatalog(db, statements, new GroupCommit(db)),
      jobs: new SqliteJobs(db),
      tokens: new SqliteTokens(statements),
      gcReports: new SqliteGcReports(db, statements),
    });
    this.#db = db;
  }

  close(): void {
    this.#db.close();
  }
}
