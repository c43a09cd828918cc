import type Database from 'better-sqlite3';
import {
  type Figures,
  type LiveStorageFigures,
  STATS_RETENTION_MS,
  type StatsHour,
  type StatsLog,
  type StorageFigures,
} from '../../ports/stats-log.ts';
import type { Statements } from './rows.ts';

interface FigureRow {
  hour: number;
  kind: 'c' | 'g';
  name: string;
  value: number;
}

/**
 * The hourly history as one row per hour and figure. Adds run in one immediate transaction, so
 * two processes on the same file (server and CLI) never lose each other's counts; hours past
 * retention go in the same transaction, which keeps the table at 35 days x figures rows.
 */
export class SqliteStatsLog implements StatsLog, LiveStorageFigures {
  readonly #statements: Statements;
  readonly #addTx: Database.Transaction<(hour: number, counters: Figures, gauges: Figures) => void>;

  constructor(db: Database.Database, statements: Statements) {
    this.#statements = statements;
    this.#addTx = db.transaction((hour: number, counters: Figures, gauges: Figures) =>
      this.#addInTx(hour, counters, gauges),
    );
  }

  async addHour(hourStart: number, counters: Figures, gauges: Figures): Promise<void> {
    this.#addTx.immediate(hourStart, counters, gauges);
  }

  #addInTx(hour: number, counters: Figures, gauges: Figures): void {
    const sql = (source: string) => this.#statements.sql(source);
    const add = sql(
      `INSERT INTO stats_hours (hour, kind, name, value) VALUES (?, 'c', ?, ?)
       ON CONFLICT (hour, kind, name) DO UPDATE SET value = value + excluded.value`,
    );
    const set = sql(
      `INSERT INTO stats_hours (hour, kind, name, value) VALUES (?, 'g', ?, ?)
       ON CONFLICT (hour, kind, name) DO UPDATE SET value = excluded.value`,
    );
    for (const [name, value] of Object.entries(counters)) {
      if (value) add.run(hour, name, value);
    }
    for (const [name, value] of Object.entries(gauges)) {
      if (value !== undefined) set.run(hour, name, value);
    }
    sql('DELETE FROM stats_hours WHERE hour < ?').run(hour - STATS_RETENTION_MS);
  }

  async listHours(sinceHour: number, untilHour = Number.MAX_SAFE_INTEGER): Promise<StatsHour[]> {
    const rows = this.#statements
      .sql<FigureRow>(
        'SELECT hour, kind, name, value FROM stats_hours WHERE hour BETWEEN ? AND ? ORDER BY hour',
      )
      .all(sinceHour, untilHour);
    const hours: StatsHour[] = [];
    for (const row of rows) {
      let last = hours.at(-1);
      if (last?.hour !== row.hour) {
        last = { hour: row.hour, counters: {}, gauges: {} };
        hours.push(last);
      }
      (row.kind === 'c' ? last.counters : last.gauges)[row.name] = row.value;
    }
    return hours;
  }

  /** Counted live: the blobs index and the manifests' config index, not the rows. */
  async storageFigures(): Promise<StorageFigures> {
    const blobs = this.#statements
      .sql<{ blobs: number; bytes: number }>(
        `SELECT COUNT(*) AS blobs, COALESCE(SUM(size), 0) AS bytes FROM blobs WHERE state = 'live'`,
      )
      .get();
    const images = this.#statements
      .sql<{ images: number }>(
        'SELECT COUNT(*) AS images FROM manifests WHERE config_digest IS NOT NULL',
      )
      .get();
    return {
      storedBytes: blobs?.bytes ?? 0,
      storedBlobs: blobs?.blobs ?? 0,
      images: images?.images ?? 0,
    };
  }
}
