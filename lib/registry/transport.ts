import type { IncomingHttpHeaders } from 'node:http';
import type { Readable } from 'node:stream';
import { Agent } from 'undici';
import { UpstreamError } from '../errors.ts';
import {
  ADDRESS_NOT_ALLOWED,
  assertSafeDestination,
  guardedLookup,
  type Reach,
  type RegistryOrigin,
  type Resolver,
  ruleFor,
  systemResolver,
} from './destinations.ts';
import { networkError } from './retry.ts';

export interface Timeouts {
  /** TCP + TLS handshake. */
  connectMs: number;
  /** From sending the request to the last response header. */
  headersMs: number;
  /** Longest silence between two body chunks: a stalled CDN, not a slow one. */
  bodyMs: number;
  /** A manifest or token body in all: a registry dripping one is given up (readCapped). */
  jsonBodyMs: number;
}

export const DEFAULT_TIMEOUTS: Timeouts = {
  connectMs: 10_000,
  headersMs: 30_000,
  bodyMs: 30_000,
  jsonBodyMs: 60_000,
};

export interface TransportOptions {
  userAgent: string;
  connectionsPerOrigin: number;
  timeouts: Timeouts;
  /** Resolves names at connect time; node:dns unless a test makes a name resolve elsewhere. */
  resolve?: Resolver;
}

export interface SendInit {
  method: 'GET' | 'HEAD';
  headers: Record<string, string>;
  /** Sent only to `authorizedOrigin`; a redirect elsewhere (a CDN) goes without it. */
  authorization?: string | undefined;
  authorizedOrigin: string;
  /** 0 returns a 3xx to the caller; blobs allow a few hops to reach the CDN. */
  maxRedirects: number;
  /** Whose request this is: decides which addresses each hop may reach (destinations.ts). */
  registry: RegistryOrigin;
  /** Names the first URL in a refusal: `URL of registry docker.io`, `token realm of ...`. */
  purpose: string;
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
 * The only place that opens connections. One keep-alive pool per address policy, shared by
 * every registry and CDN host: pulls of many layers reuse warm connections (a TLS handshake
 * per layer would dominate small layers), and `connectionsPerOrigin` bounds how hard one pull
 * hits one host. The `private` pool may connect to private addresses and serves a registry's
 * configured origin and what a private registry points at; the `public` pool serves what a
 * public registry points at. Neither connects to the "never" addresses.
 */
export class Transport {
  readonly #agents: Record<Reach, Agent>;
  readonly #userAgent: string;

  constructor(options: TransportOptions) {
    this.#userAgent = options.userAgent;
    const agent = (reach: Reach) =>
      new Agent({
        connections: options.connectionsPerOrigin,
        keepAliveTimeout: 30_000,
        headersTimeout: options.timeouts.headersMs,
        bodyTimeout: options.timeouts.bodyMs,
        connect: {
          timeout: options.timeouts.connectMs,
          lookup: guardedLookup(reach, options.resolve ?? systemResolver),
        },
      });
    this.#agents = { private: agent('private'), public: agent('public') };
  }

  async send(url: URL, init: SendInit): Promise<RegistryResponse> {
    let current = url;
    let purpose = init.purpose;
    for (let hop = 0; ; hop++) {
      // IP literals are connected to without a lookup, so the URL itself is checked first.
      const rule = ruleFor(current, init.registry);
      assertSafeDestination(current, purpose, rule);
      const headers: Record<string, string> = {
        'user-agent': this.#userAgent,
        ...init.headers,
      };
      if (init.authorization && current.origin === init.authorizedOrigin) {
        headers.authorization = init.authorization;
      }
      let response: Awaited<ReturnType<Agent['request']>>;
      try {
        response = await this.#agents[rule.reach].request({
          origin: current.origin,
          path: `${current.pathname}${current.search}`,
          method: init.method,
          headers,
        });
      } catch (err) {
        const refused = addressRefusal(err);
        if (refused) {
          throw new UpstreamError(
            'UPSTREAM_ERROR',
            `refusing ${purpose} to ${current.host}: address not allowed (${refused})`,
          );
        }
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
      purpose = `redirect from ${current.host}`;
      current = next;
    }
  }

  async close(): Promise<void> {
    await Promise.all([this.#agents.private.close(), this.#agents.public.close()]);
  }
}

/** The message of a `guardedLookup` refusal somewhere in an undici error's causes. */
function addressRefusal(err: unknown): string | undefined {
  for (let cause = err, depth = 0; cause && depth < 5; depth++) {
    const { code, message } = cause as { code?: unknown; message?: unknown };
    if (code === ADDRESS_NOT_ALLOWED) return String(message);
    cause = (cause as { cause?: unknown }).cause;
  }
  return undefined;
}
