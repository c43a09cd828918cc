import { afterEach, beforeEach } from 'vitest';

/** A fresh, empty store for one test, and how to dispose of it. */
export interface StoreHarness<T> {
  store: T;
  cleanup(): Promise<void>;
  /**
   * A second instance over the same storage, as another process or Lambda container would open
   * it (closed by the harness's cleanup); absent where storage is private (SQLite :memory:).
   */
  another?(): Promise<T>;
}

/** A port's conformance suite, run by each adapter's test file over its own stores. */
export type Conformance<T> = (name: string, make: () => Promise<StoreHarness<T>>) => void;

/**
 * Gives every test of the surrounding describe a fresh store, cleaned up after. The answer stands
 * for the current test's store (a forwarding proxy), so suites read like plain calls on a port.
 */
export function freshStore<T extends object>(make: () => Promise<StoreHarness<T>>): T {
  return freshHarness(make).store;
}

/** As freshStore, with the harness's other handles (`another`) for the current test. */
export function freshHarness<T extends object>(
  make: () => Promise<StoreHarness<T>>,
): { store: T; another(): Promise<T> } {
  let harness: StoreHarness<T> | undefined;
  beforeEach(async () => {
    harness = await make();
  });
  afterEach(async () => {
    await harness?.cleanup();
    harness = undefined;
  });
  const current = () => {
    if (!harness) throw new Error('a conformance store is used outside a test');
    return harness;
  };
  const store = new Proxy({} as T, {
    get(_target, prop) {
      const target = current().store;
      const value = Reflect.get(target, prop, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
  // Without storage to share, the one store stands in for both writers.
  return { store, another: async () => (await current().another?.()) ?? current().store };
}
