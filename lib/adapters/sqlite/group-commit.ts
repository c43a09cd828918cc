import type Database from 'better-sqlite3';

interface GroupedWrite {
  run(): unknown;
  resolve(value: unknown): void;
  reject(error: unknown): void;
}

/**
 * Group commit for the collector's transitions: statements issued in the same tick (the
 * collector starts a chunk of them at once) share one transaction and so one fsync, instead
 * of one each with synchronous=FULL. Every statement stays its own conditional write; only
 * durability is shared, and no caller hears its answer before the commit.
 */
export class GroupCommit {
  readonly #pending: GroupedWrite[] = [];
  readonly #tx: Database.Transaction<(batch: GroupedWrite[]) => unknown[]>;

  constructor(db: Database.Database) {
    this.#tx = db.transaction((batch: GroupedWrite[]) => batch.map((w) => w.run()));
  }

  run<T>(write: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.#pending.push({ run: write, resolve: resolve as (value: unknown) => void, reject });
      if (this.#pending.length === 1) queueMicrotask(() => this.#flush());
    });
  }

  #flush(): void {
    const batch = this.#pending.splice(0);
    let results: unknown[];
    try {
      results = this.#tx.immediate(batch);
    } catch (error) {
      for (const write of batch) write.reject(error);
      return;
    }
    batch.forEach((write, i) => {
      write.resolve(results[i]);
    });
  }
}
