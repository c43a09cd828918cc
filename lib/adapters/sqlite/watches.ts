import type Database from 'better-sqlite3';
import type { Digest } from '../../digest.ts';
import {
  BACKGROUND_PULL_HOURS_KEPT_MS,
  type RegistryPause,
  type WatchCheckOutcome,
  type WatchRecord,
  type WatchSettings,
  type WatchStore,
} from '../../ports/watch-store.ts';
import { ms, type Statements } from './rows.ts';

export const WATCHES_MIGRATION = `CREATE TABLE watches (
     name TEXT PRIMARY KEY,
     registry TEXT NOT NULL,
     every_ms INTEGER NOT NULL,
     platforms TEXT NOT NULL,
     pin INTEGER NOT NULL,
     created_at INTEGER NOT NULL,
     next_check_at INTEGER NOT NULL,
     last_check_at INTEGER,
     last_digest TEXT,
     last_change_at INTEGER,
     last_error TEXT,
     last_jobs TEXT
   ) WITHOUT ROWID;
   CREATE TABLE registry_pauses (
     registry TEXT PRIMARY KEY,
     paused_until INTEGER NOT NULL,
     reason TEXT NOT NULL
   ) WITHOUT ROWID;
   CREATE TABLE background_pulls (
     registry TEXT NOT NULL,
     hour INTEGER NOT NULL,
     pulls INTEGER NOT NULL,
     PRIMARY KEY (registry, hour)
   ) WITHOUT ROWID;`;

interface WatchRow {
  name: string;
  registry: string;
  every_ms: number;
  platforms: string;
  pin: number;
  created_at: number;
  next_check_at: number;
  last_check_at: number | null;
  last_digest: string | null;
  last_change_at: number | null;
  last_error: string | null;
  last_jobs: string | null;
}

interface PauseRow {
  registry: string;
  paused_until: number;
  reason: string;
}

type PutAnswer = { record: WatchRecord; created: boolean };

/**
 * Watches, registry pauses and background-pull budgets in the catalog file. Every change that
 * another process may race (a claim, a budget take) is one conditional statement, so two
 * schedulers on one file (serve and a CLI) settle it by SQLite's write lock alone.
 */
export class SqliteWatches implements WatchStore {
  readonly #statements: Statements;
  readonly #putTx: Database.Transaction<
    (settings: WatchSettings, now: number, nextCheckAt: number) => PutAnswer
  >;
  readonly #takeTx: Database.Transaction<
    (registry: string, hourStart: number, limit: number) => boolean
  >;

  constructor(db: Database.Database, statements: Statements) {
    this.#statements = statements;
    this.#putTx = db.transaction((settings: WatchSettings, now: number, nextCheckAt: number) =>
      this.#putInTx(settings, now, nextCheckAt),
    );
    this.#takeTx = db.transaction((registry: string, hourStart: number, limit: number) =>
      this.#takeInTx(registry, hourStart, limit),
    );
  }

  async putWatch(settings: WatchSettings, now: number, nextCheckAt: number): Promise<PutAnswer> {
    // Immediate: the read that decides between create and update holds the write lock.
    return this.#putTx.immediate(settings, now, nextCheckAt);
  }

  #putInTx(settings: WatchSettings, now: number, nextCheckAt: number): PutAnswer {
    const params = [
      settings.registry,
      ms(settings.everyMs),
      JSON.stringify(settings.platforms),
      settings.pin ? 1 : 0,
    ];
    const created = this.#statements.changedOne(
      `INSERT INTO watches (registry, every_ms, platforms, pin, name, created_at, next_check_at)
       VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO NOTHING`,
      ...params,
      settings.name,
      ms(now),
      ms(nextCheckAt),
    );
    if (!created) {
      // The right-hand sides read the row as it was: the schedule moves only with its interval.
      this.#statements
        .sql(
          `UPDATE watches SET registry = ?, every_ms = ?, platforms = ?, pin = ?,
             next_check_at = CASE WHEN every_ms = ? THEN next_check_at ELSE ? END
           WHERE name = ?`,
        )
        .run(...params, ms(settings.everyMs), ms(nextCheckAt), settings.name);
    }
    const record = this.#get(settings.name);
    if (!record) throw new Error(`watch ${settings.name} vanished inside its own transaction`);
    return { record, created };
  }

  async getWatch(name: string): Promise<WatchRecord | undefined> {
    return this.#get(name);
  }

  #get(name: string): WatchRecord | undefined {
    return this.#statements.record('SELECT * FROM watches WHERE name = ?', toWatch, name);
  }

  async deleteWatch(name: string): Promise<WatchRecord | undefined> {
    return this.#statements.record('DELETE FROM watches WHERE name = ? RETURNING *', toWatch, name);
  }

  async listWatches(): Promise<WatchRecord[]> {
    return this.#statements.sql<WatchRow>('SELECT * FROM watches ORDER BY name').all().map(toWatch);
  }

  async claimWatchCheck(name: string, due: number, leaseUntil: number): Promise<boolean> {
    return this.#statements.changedOne(
      'UPDATE watches SET next_check_at = ? WHERE name = ? AND next_check_at = ?',
      ms(leaseUntil),
      name,
      ms(due),
    );
  }

  async recordWatchCheck(name: string, outcome: WatchCheckOutcome): Promise<void> {
    // COALESCE keeps what the outcome does not say; a row deleted meanwhile matches nothing.
    this.#statements
      .sql(
        `UPDATE watches SET last_check_at = ?, next_check_at = ?,
           last_digest = COALESCE(?, last_digest),
           last_change_at = COALESCE(?, last_change_at),
           last_jobs = COALESCE(?, last_jobs),
           last_error = ?
         WHERE name = ?`,
      )
      .run(
        ms(outcome.checkedAt),
        ms(outcome.nextCheckAt),
        outcome.digest ?? null,
        outcome.change ? ms(outcome.change.at) : null,
        outcome.change ? JSON.stringify(outcome.change.jobs) : null,
        outcome.error ?? null,
        name,
      );
  }

  async pauseRegistry(pause: RegistryPause): Promise<void> {
    this.#statements
      .sql(
        `INSERT INTO registry_pauses (registry, paused_until, reason) VALUES (?, ?, ?)
         ON CONFLICT (registry) DO UPDATE SET paused_until = excluded.paused_until,
           reason = excluded.reason
         WHERE excluded.paused_until > registry_pauses.paused_until`,
      )
      .run(pause.registry, ms(pause.until), pause.reason);
  }

  async listRegistryPauses(): Promise<RegistryPause[]> {
    return this.#statements
      .sql<PauseRow>('SELECT * FROM registry_pauses ORDER BY registry')
      .all()
      .map((row) => ({ registry: row.registry, until: row.paused_until, reason: row.reason }));
  }

  async takeBackgroundPull(registry: string, hourStart: number, limit: number): Promise<boolean> {
    return this.#takeTx.immediate(registry, ms(hourStart), limit);
  }

  #takeInTx(registry: string, hour: number, limit: number): boolean {
    this.#statements
      .sql('DELETE FROM background_pulls WHERE hour < ?')
      .run(hour - BACKGROUND_PULL_HOURS_KEPT_MS);
    // The insert counts the hour's first pull, so a budget of none must not reach it.
    if (limit < 1) return false;
    return this.#statements.changedOne(
      `INSERT INTO background_pulls (registry, hour, pulls) VALUES (?, ?, 1)
       ON CONFLICT (registry, hour) DO UPDATE SET pulls = pulls + 1 WHERE pulls < ?`,
      registry,
      hour,
      limit,
    );
  }

  async backgroundPulls(registry: string, hourStart: number): Promise<number> {
    const row = this.#statements
      .sql<{ pulls: number }>('SELECT pulls FROM background_pulls WHERE registry = ? AND hour = ?')
      .get(registry, ms(hourStart));
    return row?.pulls ?? 0;
  }
}

function toWatch(row: WatchRow): WatchRecord {
  return {
    name: row.name,
    registry: row.registry,
    everyMs: row.every_ms,
    platforms: JSON.parse(row.platforms) as string[],
    pin: row.pin === 1,
    createdAt: row.created_at,
    nextCheckAt: row.next_check_at,
    ...(row.last_check_at !== null && { lastCheckAt: row.last_check_at }),
    ...(row.last_digest !== null && { lastDigest: row.last_digest as Digest }),
    ...(row.last_change_at !== null && { lastChangeAt: row.last_change_at }),
    ...(row.last_error !== null && { lastError: row.last_error }),
    ...(row.last_jobs !== null && { lastJobs: JSON.parse(row.last_jobs) as string[] }),
  };
}
