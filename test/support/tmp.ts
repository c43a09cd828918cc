import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface TempDir {
  readonly path: string;
  /** A path inside the folder (not created). */
  file(...parts: string[]): string;
  /** Removes the folder and everything in it; safe to call twice. */
  cleanup(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/** Creates a fresh folder under the OS temp dir, named `image-cache-<prefix>-XXXXXX`. */
export async function tempDir(prefix = 'test'): Promise<TempDir> {
  const path = await mkdtemp(join(tmpdir(), `image-cache-${prefix}-`));
  const cleanup = () => rm(path, { recursive: true, force: true, maxRetries: 3 });
  return {
    path,
    file: (...parts) => join(path, ...parts),
    cleanup,
    [Symbol.asyncDispose]: cleanup,
  };
}

/**
 * Collects temp folders created during a test file so one `afterAll(temps.cleanupAll)` removes
 * them all, even when a test failed halfway.
 */
export function tempDirs(prefix = 'test') {
  const created: TempDir[] = [];
  return {
    async create(): Promise<TempDir> {
      const dir = await tempDir(prefix);
      created.push(dir);
      return dir;
    },
    async cleanupAll(): Promise<void> {
      await Promise.all(created.splice(0).map((dir) => dir.cleanup()));
    },
  };
}

/**
 * A `.catch` handler that answers `fallback` only when the path does not exist (ENOENT) and
 * rethrows anything else, so a permission error or a wrong type never reads as "empty".
 */
export function whenMissing<T>(fallback: T): (error: unknown) => T {
  return (error) => {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return fallback;
    throw error;
  };
}
