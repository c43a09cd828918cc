import type { IncomingHttpHeaders } from 'node:http';
import type { Readable } from 'node:stream';
import { Agent } from 'undici';
import { UpstreamError } from '../errors.ts';
import { assertSafeDestination, guardedLookup } from './destinations.ts';
import { networkError } from './retry.ts';

export interface Timeouts {
  /** TCP + TLS handshake. */
  connectMs: number;
  /** From sending the request to the last response header. */
  headersMs: number;
  /** Longest silence between two body chunks: a stalled CDN, not a slow one. */
  bodyMs: number;
}

export const DEFAULT_TIMEOUTS: Timeouts = { connectMs: 10_000, headersMs: 30_000, bodyMs: 30_000 };

export interface TransportOptions {
  userAgent: string;
  connectionsPerOrigin: number;
  timeouts: Timeouts;
}

export interface SendInit {
  method: 'GET' | 'HEAD';
  headers: Record<string, string>;
  /** Sent only to `authorizedOrigin`; a redirect elsewhere (a CDN) goes without it. */
  authorization?: string | undefined;
  authorizedOrigin: string;
  /** 0 returns a 3xx to the caller; blobs allow a few hops to reach the CDN. */
  maxRedirects: number;
}

export interface RegistryResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: Readable;
  /** Where the response came from after redirects. */
  url: URL;
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);

/** `GET https://host/v2/x/manifests/1`, never the query string (signed CDN URLs, tokens). */
export function describe(method: string, url: URL): string {
  return `${method} ${url.origin}${url.pathname}`;
}

/** Drains what is left of a body so the keep-alive connection can be reused. */
export async function discard(body: Readable): Promise<void> {
  const dump = (body as Readable & { dump?: (opts?: { limit: number }) => Promise<void> }).dump;
  try {
    if (dump) await dump.call(body, { limit: 64 * 1024 });
    else body.destroy();
  } catch {
    // A failed drain only costs the connection.
  }
}

/**
 * The only place that opens connections. One keep-alive pool for every registry and CDN host:
 * pulls of many layers reuse warm connections (a TLS handshake per layer would dominate small
 * layers), and `connectionsPerOrigin` bounds how hard one pull hits one host.
 */
export class Transport {
  readonly #agent: Agent;
  readonly #userAgent: string;

  constructor(options: TransportOptions) {
    this.#userAgent = options.userAgent;
    this.#agent = new Agent({
      connections: options.connectionsPerOrigin,
      keepAliveTimeout: 30_000,
      headersTimeout: options.timeouts.headersMs,
      bodyTimeout: options.timeouts.bodyMs,
      connect: { timeout: options.timeouts.connectMs, lookup: guardedLookup },
    });
  }

  async send(url: URL, init: SendInit): Promise<RegistryResponse> {
    let current = url;
    for (let hop = 0; ; hop++) {
      const headers: Record<string, string> = {
        'user-agent': this.#userAgent,
        ...init.headers,
      };
      if (init.authorization && current.origin === init.authorizedOrigin) {
        headers.authorization = init.authorization;
      }
      let response: Awaited<ReturnType<Agent['request']>>;
      try {
        response = await this.#agent.request({
          origin: current.origin,
          path: `${current.pathname}${current.search}`,
          method: init.method,
          headers,
        });
      } catch (err) {
        throw networkError(err, describe(init.method, current));
      }
      const { statusCode, headers: responseHeaders, body } = response;
      const location = responseHeaders.location;
      if (!REDIRECTS.has(statusCode) || init.maxRedirects === 0 || typeof location !== 'string') {
        return { status: statusCode, headers: responseHeaders, body, url: current };
      }
      await discard(body);
      if (hop >= init.maxRedirects) {
        throw new UpstreamError(
          'UPSTREAM_ERROR',
          `${describe(init.method, url)}: more than ${init.maxRedirects} redirects`,
        );
      }
      let next: URL;
      try {
        next = new URL(location, current);
      } catch {
        throw new UpstreamError(
          'UPSTREAM_ERROR',
          `${describe(init.method, current)}: invalid redirect location`,
        );
      }
      assertSafeDestination(next, `redirect from ${current.host}`);
      current = next;
    }
  }

  async close(): Promise<void> {
    await this.#agent.close();
  }
}
