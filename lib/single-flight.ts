/**
 * Shares one in-flight promise per key: the second caller for a blob or manifest that is
 * already being fetched waits for the first fetch instead of starting another (invariant 5).
 * The entry is dropped when the work settles, so a failure is not cached.
 */
export class SingleFlight<V> {
  #inFlight = new Map<string, Promise<V>>();
  readonly #onJoin: (() => void) | undefined;

  /** `onJoin` hears of every caller that shared work under way (the joins /metrics counts). */
  constructor(onJoin?: () => void) {
    this.#onJoin = onJoin;
  }

  run(key: string, work: () => Promise<V>): Promise<V> {
    const existing = this.#inFlight.get(key);
    if (existing) {
      this.#onJoin?.();
      return existing;
    }
    const promise = work().finally(() => {
      this.#inFlight.delete(key);
    });
    this.#inFlight.set(key, promise);
    return promise;
  }

  has(key: string): boolean {
    return this.#inFlight.has(key);
  }
}

/** Fans progress of one shared download out to every pull waiting on it. */
export class Broadcast<E> {
  #listeners = new Set<(event: E) => void>();
  #last: E | undefined;

  subscribe(listener: (event: E) => void): () => void {
    this.#listeners.add(listener);
    if (this.#last !== undefined) listener(this.#last);
    return () => this.#listeners.delete(listener);
  }

  emit(event: E): void {
    this.#last = event;
    for (const listener of this.#listeners) listener(event);
  }
}
