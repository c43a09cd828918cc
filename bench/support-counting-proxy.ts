/**
 * A counting HTTP proxy for benchmarks: put between the cache and an upstream registry (name
 * the proxy in IMAGE_CACHE_REGISTRIES), it forwards every request as it is and streams both
 * bodies with pipe (nothing is buffered), counting requests per method and path and the
 * response bytes it passed on.
 */
import { createServer, request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface CountingProxy {
  /** `http://127.0.0.1:<port>` */
  readonly url: string;
  /** Requests seen per `<METHOD> <path without query>`. */
  readonly counts: Map<string, number>;
  /** Response body bytes passed to the cache. */
  bytes(): number;
  /** GETs of `/v2/<name>/blobs/<digest>` per digest. */
  blobGets(): Map<string, number>;
  reset(): void;
  stop(): Promise<void>;
}

const BLOB_PATH = /^\/v2\/.+\/blobs\/(sha256:[0-9a-f]{64})$/;

export async function startCountingProxy(upstream: string): Promise<CountingProxy> {
  const target = new URL(upstream);
  const counts = new Map<string, number>();
  let bytes = 0;
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0]!;
    const key = `${req.method} ${path}`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
    const forward = httpRequest(
      {
        host: target.hostname,
        port: target.port,
        method: req.method,
        path: req.url,
        headers: { ...req.headers, host: target.host },
      },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.on('data', (chunk: Buffer) => {
          bytes += chunk.length;
        });
        answer.pipe(res);
        answer.once('error', () => res.destroy());
      },
    );
    forward.once('error', (error) => {
      if (res.headersSent) res.destroy();
      else res.writeHead(502, { 'Content-Type': 'text/plain' }).end(`proxy: ${error.message}\n`);
    });
    // The cache hanging up (a cancelled fetch) cancels the upstream request too.
    res.once('close', () => {
      if (!res.writableFinished) forward.destroy();
    });
    req.pipe(forward);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    counts,
    bytes: () => bytes,
    blobGets() {
      const gets = new Map<string, number>();
      for (const [key, n] of counts) {
        const match = key.startsWith('GET ') ? BLOB_PATH.exec(key.slice(4)) : null;
        if (match) gets.set(match[1]!, (gets.get(match[1]!) ?? 0) + n);
      }
      return gets;
    },
    reset() {
      counts.clear();
      bytes = 0;
    },
    stop: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
