import { afterEach, beforeEach } from 'vitest';

/** A fresh, empty store for one test, and how to dispose of it. */
export interface StoreHarness<T> {
  store: T;
  cleanup(): Promise<void>;
}

/** A port's conformance suite, run by each adapter's test file over its own stores. */
export type Conformance<T> = (name: string, make: () => Promise<StoreHarness<T>>) => void;

/**
 * Gives every test of the surrounding describe a fresh store, cleaned up after. The answer stands
 * for the current test's store (a forwarding proxy), so suites read like plain calls on a port.
 */
export function freshStore<T extends object>(make: () => Promise<StoreHarness<T>>): T {
  let harness: StoreHarness<T> | undefined;
  beforeEach(async () => {
    harness = await make();
  });
  afterEach(async () => {
    await harness?.cleanup();
    harness = undefined;
  });
  return new Proxy({} as T, {
    get(_target, prop) {
      if (!harness) throw new Error('a conformance store is used outside a test');
      const store = harness.store;
      const value = Reflect.get(store, prop, store);
      return typeof value === 'function' ? value.bind(store) : value;
    },
  });
}
