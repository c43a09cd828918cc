import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { FsBlobStore } from './adapters/fs-blob-store.ts';
import { SqliteCatalog } from './adapters/sqlite-catalog.ts';
import type { ServeConfig } from './config.ts';
import type { EngineContext } from './engine/context.ts';
import { type Clock, systemClock } from './ports/clock.ts';
import type { Upstream } from './ports/upstream.ts';
import { PullService } from './pull.ts';
import { HttpUpstream } from './registry/http-upstream.ts';

export interface Composition {
  context: EngineContext;
  close(): Promise<void>;
}

/** The one place that turns validated configuration into the core and its adapters. */
export function composeEmbedded(
  config: ServeConfig,
  overrides: { clock?: Clock; upstream?: Upstream } = {},
): Composition {
  mkdirSync(config.dataDir, { recursive: true });
  const clock = overrides.clock ?? systemClock;
  const blobs = new FsBlobStore(config.dataDir);
  const catalog = new SqliteCatalog(join(config.dataDir, 'catalog.db'));
  const upstream =
    overrides.upstream ??
    new HttpUpstream({ registries: config.registries, credentials: config.credentials, clock });
  const pulls = new PullService({
    catalog,
    blobs,
    upstream,
    clock,
    tagTtlMs: config.tagTtlMs,
    concurrency: config.concurrency,
  });
  return {
    context: {
      catalog,
      blobs,
      upstream,
      pulls,
      clock,
      registries: config.registries,
      version: packageVersion(),
    },
    close: async () => {
      catalog.close();
    },
  };
}

function packageVersion(): string {
  const path = new URL('../package.json', import.meta.url);
  return (JSON.parse(readFileSync(path, 'utf8')) as { version: string }).version;
}
