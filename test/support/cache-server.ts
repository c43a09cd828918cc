import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseServeArgs } from '../../lib/config.ts';
import { type RunningServer, startServer } from '../../lib/server.ts';

export interface CacheServer extends RunningServer {
  dataDir: string;
  /** `127.0.0.1:<port>`, for DOCKER_HOST=tcp://... */
  hostPort: string;
}

/**
 * Starts the project's own server in process on a free port with a fresh data folder, resolving
 * registries as `IMAGE_CACHE_REGISTRIES` would.
 */
export async function startCacheServer(
  options: { registries: string; flags?: string[]; dataDir?: string } = { registries: '' },
): Promise<CacheServer> {
  const dataDir = options.dataDir ?? (await mkdtemp(join(tmpdir(), 'image-cache-data-')));
  const config = parseServeArgs(['--port', '0', '--data', dataDir, ...(options.flags ?? [])], {
    IMAGE_CACHE_REGISTRIES: options.registries,
  });
  const server = await startServer(config);
  return {
    ...server,
    dataDir,
    hostPort: `127.0.0.1:${server.port}`,
    close: async () => {
      await server.close();
      if (!options.dataDir) await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/** Reads a pull's NDJSON progress stream into parsed messages. */
export async function pullVia(
  baseUrl: string,
  params: Record<string, string>,
): Promise<{ status: number; messages: Array<Record<string, unknown>>; body: string }> {
  const url = new URL('/images/create', baseUrl);
  for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v);
  const response = await fetch(url, { method: 'POST' });
  const body = await response.text();
  const messages = body
    .split(/\r?\n/)
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  return { status: response.status, messages, body };
}
