import { afterEach, beforeEach } from 'vitest';

/** A fresh, empty store for one test, and how to dispose of it. */
export interface StoreHarness<T> {
  store: T;
  cleanup(): Promise<void>;
}

/** Gives every test of the surrounding describe a fresh store (through `use`), cleaned up after. */
export function useFreshStore<T>(
  make: () => Promise<StoreHarness<T>>,
  use: (store: T) => void,
): void {
  let harness: StoreHarness<T>;
  beforeEach(async () => {
    harness = await make();
    use(harness.store);
  });
  afterEach(async () => {
    await harness.cleanup();
  });
}
