import type Database from 'better-sqlite3';
import type { GcReport, GcReportLog } from '../../ports/gc-report-log.ts';
import type { Statements } from './rows.ts';

/** GC reports kept; older ones are dropped as new ones arrive. */
const GC_REPORTS_KEPT = 100;

/** The latest GC reports, as JSON rows ordered by an autoincrement sequence. */
export class SqliteGcReports implements GcReportLog {
  readonly #statements: Statements;
  readonly #putTx: Database.Transaction<(report: GcReport) => void>;

  constructor(db: Database.Database, statements: Statements) {
    this.#statements = statements;
    this.#putTx = db.transaction((report: GcReport) => this.#putInTx(report));
  }

  async putGcReport(report: GcReport): Promise<void> {
    this.#putTx.immediate(report);
  }

  #putInTx(report: GcReport): void {
    const sql = (source: string) => this.#statements.sql(source);
    // Re-storing a report id replaces it and makes it the newest.
    sql('DELETE FROM gc_reports WHERE id = ?').run(report.id);
    sql('INSERT INTO gc_reports (id, report) VALUES (?, ?)').run(report.id, JSON.stringify(report));
    sql(
      `DELETE FROM gc_reports WHERE seq <= (SELECT seq FROM gc_reports ORDER BY seq DESC
         LIMIT 1 OFFSET ?)`,
    ).run(GC_REPORTS_KEPT);
  }

  async listGcReports(limit: number): Promise<GcReport[]> {
    const rows = this.#statements
      .sql<{ report: string }>('SELECT report FROM gc_reports ORDER BY seq DESC LIMIT ?')
      .all(Math.max(0, Math.trunc(limit)));
    return rows.map((row) => JSON.parse(row.report) as GcReport);
  }
}
