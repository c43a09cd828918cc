/**
 * The embedded composition (filesystem blobs, SQLite catalog) in a temp folder with a manual
 * clock, driven through the router without a socket: for tests of routes whose timing matters.
 */
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { composeEmbedded } from '../../lib/composition.ts';
import { parseServeArgs } from '../../lib/config.ts';
import type { EngineContext } from '../../lib/engine/context.ts';
import { createRouter, type Router } from '../../lib/engine/router.ts';
import { whenMissing } from './tmp.ts';
import { ManualClock } from './upstream-harness.ts';

export interface EngineHarness {
  context: EngineContext;
  router: Router;
  clock: ManualClock;
  dataDir: string;
  call(
    method: string,
    path: string,
    query?: Record<string, string>,
    // biome-ignore lint/suspicious/noExplicitAny: tests check response bodies field by field
  ): Promise<{ status: number; body: any }>;
  /** hex -> size of every file in <data>/blobs/sha256. */
  blobFiles(): Promise<Map<string, number>>;
  close(): Promise<void>;
}

export async function startEngine(flags: string[] = []): Promise<EngineHarness> {
  const dataDir = await mkdtemp(join(tmpdir(), 'image-cache-engine-'));
  const clock = new ManualClock(Date.UTC(2024, 6, 1));
  const config = parseServeArgs(['--data', dataDir, '--gc-interval', '0', ...flags], {
    IMAGE_CACHE_REGISTRIES: '',
  });
  const composition = composeEmbedded(config, { clock });
  const router = createRouter(composition.context);
  return {
    context: composition.context,
    router,
    clock,
    dataDir,
    async call(method, path, query = {}) {
      const response = await router({
        method,
        path,
        query: new URLSearchParams(query),
        headers: {},
      });
      const text = typeof response.body === 'string' ? response.body : '';
      return { status: response.status, body: text ? JSON.parse(text) : undefined };
    },
    async blobFiles() {
      const dir = join(dataDir, 'blobs/sha256');
      const files = new Map<string, number>();
      for (const name of await readdir(dir).catch(whenMissing<string[]>([]))) {
        if (/^[a-f0-9]{64}$/.test(name)) files.set(name, (await stat(join(dir, name))).size);
      }
      return files;
    },
    async close() {
      await composition.close();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}
