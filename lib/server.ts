import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  type Composition,
  composeAws,
  composeEmbedded,
  type GcSchedule,
  type Overrides,
} from './composition.ts';
import type { RequestTimeLimits, ServeConfig } from './config.ts';
import { errorResponse, type HttpRequest, type HttpResponse } from './engine/http.ts';
import { createRouter, type Router } from './engine/router.ts';
import { InvalidArgumentError } from './errors.ts';
import { closeAfterUnreadBody, watchBody } from './request-limits.ts';

/** How often the hourly history gets this process's counts: a crash loses at most this much. */
const STATS_FLUSH_INTERVAL_MS = 60_000;

export interface RunningServer {
  url: string;
  port: number;
  close(): Promise<void>;
}

/**
 * Starts the server on Node's HTTP server: filesystem blobs and SQLite by default, S3 and
 * DynamoDB with `--backend aws`.
 */
export async function startServer(
  config: ServeConfig,
  overrides: Overrides = {},
): Promise<RunningServer> {
  const composition =
    config.backend === 'aws'
      ? await composeAws(config, overrides)
      : composeEmbedded(config, overrides);
  const router = createRouter(composition.context);
  await composition.operations.warnOfAnonymousDockerHub();
  await sweepDeadWrites(composition);
  const limits = config.requestLimits;
  const server = createServer((req, res) => {
    void serveRequest(router, req, res, limits);
  });
  // Node's requestTimeout is one fixed total, which would cut a large load off on a slow link;
  // bodies are held to a rate instead (lib/request-limits.ts).
  server.requestTimeout = 0;
  server.headersTimeout = limits.headersTimeoutMs;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, config.host, resolve);
  });
  const { port } = server.address() as AddressInfo;
  // GC and retention on a timer (the AWS stack uses EventBridge instead); 0 turns it off.
  const schedule: GcSchedule | undefined =
    config.gcIntervalMs > 0
      ? composition.operations.scheduleMaintenance(config.gcIntervalMs, (error) =>
          console.error('scheduled garbage collection failed:', error),
        )
      : undefined;
  // Watched tags (the AWS stack runs the same pass from EventBridge); 0 turns it off.
  const watches: GcSchedule | undefined =
    config.watch.tickMs > 0
      ? composition.operations.scheduleWatches(config.watch.tickMs, (error) =>
          console.error('image-cache: a pass over the watched tags failed:', error),
        )
      : undefined;
  const statsFlush = composition.operations.scheduleStatsFlush(STATS_FLUSH_INTERVAL_MS, (error) =>
    console.error('image-cache: writing the stats history failed (kept for the next try):', error),
  );

  const host = config.host.includes(':') ? `[${config.host}]` : config.host;
  return {
    url: `http://${host}:${port}`,
    port,
    close: async () => {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      await schedule?.stop();
      await watches?.stop();
      await statsFlush.stop();
      // The last minute's counts, after the last request was answered.
      await composition.operations.flushStats().catch((error: unknown) => {
        console.error('image-cache: writing the stats history at shutdown failed:', error);
      });
      await composition.close();
    },
  };
}

/**
 * Temp files of writes that died with an earlier process (a killed pull or load) are removed
 * before serving; those of live writers (another process on the same data) only once idle.
 */
async function sweepDeadWrites(composition: Composition): Promise<void> {
  try {
    const swept = await composition.operations.sweepDeadWrites();
    if (swept && swept.files > 0) {
      console.error(
        `image-cache: removed ${swept.files} unfinished writes (${swept.bytes} bytes) left by a previous run`,
      );
    }
  } catch (error) {
    // Leftovers cost space, not correctness: the next collection tries again.
    console.error('image-cache: sweeping unfinished writes failed:', error);
  }
}

async function serveRequest(
  router: Router,
  req: IncomingMessage,
  res: ServerResponse,
  limits: RequestTimeLimits,
) {
  let url: URL;
  try {
    url = new URL(req.url ?? '/', 'http://localhost');
  } catch {
    // Node's parser lets some targets through that URL cannot read (`http://[x`).
    await writeResponse(res, errorResponse(new InvalidArgumentError('malformed request target')));
    return;
  }
  const gone = new AbortController();
  const stopWatching = watchBody(req, res, limits);
  closeAfterUnreadBody(req, res);
  res.once('close', () => {
    stopWatching();
    if (!res.writableFinished) gone.abort();
  });
  const request: HttpRequest = {
    method: req.method ?? 'GET',
    path: url.pathname,
    query: url.searchParams,
    headers: req.headers as Record<string, string | undefined>,
    body: req,
    signal: gone.signal,
  };
  const response = await router(request);
  await writeResponse(res, response).catch(() => {
    // The client went away mid-stream; the work behind the stream carries on or cleans up.
    res.destroy();
  });
}

async function writeResponse(res: ServerResponse, response: HttpResponse) {
  res.writeHead(response.status, response.headers);
  const body = response.body;
  if (body === undefined) {
    res.end();
    return;
  }
  if (typeof body === 'string' || body instanceof Uint8Array) {
    res.end(body);
    return;
  }
  // Flush each progress line as it comes rather than waiting for Nagle or a full buffer.
  res.flushHeaders();
  await pipeline(body as Readable, res);
}
