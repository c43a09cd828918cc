/**
 * A transparent HTTP proxy in front of a server under test that records what each client sent
 * and what it was answered (method, path with query, selected headers, status), so a test with
 * a real client (dockerd, containerd, skopeo) can assert the request sequence: `?ns=` on every
 * containerd request, 307s followed by dockerd, no Authorization forwarded anywhere. Bodies are
 * piped, never buffered.
 *
 *   const proxy = await startRecordingProxy(cache.url);
 *   // point the client at proxy.hostPort
 *   expect(proxy.exchanges.filter((e) => e.path.includes('/blobs/')).map((e) => e.status))...
 */
import { createServer, request } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export interface Exchange {
  method: string;
  /** The path with its query string, as the client sent it. */
  path: string;
  /** Request headers, lower-case names. */
  headers: Record<string, string | string[] | undefined>;
  /** The status answered; 0 while waiting or when the target failed. */
  status: number;
  /** Response headers, lower-case names. */
  responseHeaders: Record<string, string | string[] | undefined>;
}

/**
 * A rule for the requests `matches` picks: answer `status` (with `headers`) instead of
 * forwarding (an upstream's 429), or, without `status`, forward and add `headers` to the answer
 * (RateLimit headers). `times` rules are used up as they fire; without it a rule stays.
 */
export interface Intercept {
  matches: (method: string, path: string) => boolean;
  status?: number;
  headers: Record<string, string>;
  times?: number;
}

export interface RecordingProxy {
  /** `127.0.0.1:<port>` */
  readonly hostPort: string;
  /** `http://127.0.0.1:<port>` */
  readonly url: string;
  /** Every request so far, in arrival order. */
  readonly exchanges: Exchange[];
  /** Forgets what was recorded. */
  clear(): void;
  /** Adds a rule (see Intercept); the first matching rule applies. */
  intercept(rule: Intercept): void;
  /** Drops every rule. */
  clearIntercepts(): void;
  /** Sends later requests to another server (a restarted cache on a new port). */
  retarget(target: string): void;
  close(): Promise<void>;
}

/** Starts a proxy on 127.0.0.1 that forwards every request to `target` (an http:// origin). */
export async function startRecordingProxy(target: string): Promise<RecordingProxy> {
  let to = new URL(target);
  const exchanges: Exchange[] = [];
  let intercepts: Intercept[] = [];
  const sockets = new Set<Socket>();
  const server = createServer((req, res) => {
    const exchange: Exchange = {
      method: req.method ?? 'GET',
      path: req.url ?? '/',
      headers: { ...req.headers },
      status: 0,
      responseHeaders: {},
    };
    exchanges.push(exchange);
    const rule = intercepts.find((r) => r.matches(exchange.method, exchange.path));
    if (rule?.times !== undefined && --rule.times <= 0) {
      intercepts = intercepts.filter((r) => r !== rule);
    }
    if (rule?.status !== undefined) {
      exchange.status = rule.status;
      exchange.responseHeaders = { ...rule.headers };
      req.resume();
      res.writeHead(rule.status, { ...rule.headers, 'content-length': '0' }).end();
      return;
    }
    const forward = request(
      {
        host: to.hostname,
        port: to.port,
        method: req.method,
        path: req.url,
        headers: req.headers,
      },
      (answer) => {
        exchange.status = answer.statusCode ?? 0;
        const headers = { ...answer.headers, ...rule?.headers };
        exchange.responseHeaders = headers;
        res.writeHead(answer.statusCode ?? 502, headers);
        answer.pipe(res);
        answer.on('error', () => res.destroy());
      },
    );
    forward.on('error', () => res.destroy());
    res.on('close', () => {
      if (!res.writableFinished) forward.destroy();
    });
    req.pipe(forward);
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    hostPort: `127.0.0.1:${port}`,
    url: `http://127.0.0.1:${port}`,
    exchanges,
    clear: () => {
      exchanges.length = 0;
    },
    intercept: (rule) => {
      intercepts.push(rule);
    },
    clearIntercepts: () => {
      intercepts = [];
    },
    retarget: (next) => {
      to = new URL(next);
    },
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
