/**
 * A front door with a time limit on 127.0.0.1: every request reaches the router with
 * `deadline` set `followMs` past the hand-over margin, the way the Lambda adapters set it, so
 * the project's CLI can be tested against routes that hand work over to jobs. Direct loads can
 * be refused with 413 (API Gateway's 10 MB) to send the CLI down the presigned path.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { HANDOVER_MARGIN_MS } from '../../lib/engine/job-deadline.ts';
import type { Router } from '../../lib/engine/router.ts';

export interface DeadlineDoor {
  readonly url: string;
  /** `METHOD path` of every request, in order. */
  readonly requests: string[];
  close(): Promise<void>;
}

export async function startDeadlineDoor(
  router: Router,
  options: { followMs: number; refuseDirectLoads?: boolean },
): Promise<DeadlineDoor> {
  const requests: string[] = [];
  const server: Server = createServer((req, res) => {
    void (async () => {
      const url = new URL(req.url ?? '/', 'http://localhost');
      requests.push(`${req.method} ${url.pathname}`);
      if (options.refuseDirectLoads && /\/images\/load$/.test(url.pathname)) {
        req.resume();
        res.writeHead(413, { 'content-type': 'application/json' });
        res.end('{"message":"Request Entity Too Large"}');
        return;
      }
      const response = await router({
        method: req.method ?? 'GET',
        path: url.pathname,
        query: url.searchParams,
        headers: req.headers as Record<string, string | undefined>,
        body: req,
        deadline: Date.now() + HANDOVER_MARGIN_MS + options.followMs,
      });
      res.writeHead(response.status, response.headers);
      if (response.body === undefined || typeof response.body === 'string') {
        res.end(response.body);
      } else if (response.body instanceof Uint8Array) {
        res.end(response.body);
      } else {
        await pipeline(response.body as Readable, res);
      }
    })().catch(() => res.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
