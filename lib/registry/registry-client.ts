import { UpstreamError, UpstreamRateLimitedError } from '../errors.ts';
import type { UpstreamObserver } from '../metrics/cache-metrics.ts';
import type { Clock } from '../ports/clock.ts';
import type { RateLimitInfo } from '../ports/upstream.ts';
import { readCapped } from './accept.ts';
import { parseChallenges } from './auth.ts';
import { Authenticator, pullScope } from './authenticator.ts';
import type { CredentialSource } from './credential-source.ts';
import {
  type ReachDecider,
  type RegistryOrigin,
  RegistryReachCache,
  type Resolver,
  systemResolver,
} from './destinations.ts';
import { describeRateLimit, parseRateLimit, parseRetryAfter } from './rate-limit.ts';
import { readRegistryErrors, type Subject, statusError } from './registry-errors.ts';
import {
  isTransient,
  networkError,
  RetryableFailure,
  type RetryPolicy,
  type Sleep,
  withRetries,
} from './retry.ts';
import { describe, discard, type RegistryResponse, type Timeouts, Transport } from './transport.ts';

/** An allow-listed repository, resolved once per call. */
export interface Target {
  registry: string;
  repository: string;
  base: URL;
  /** `docker.io/library/nginx`, for messages. */
  name: string;
}

export interface RegistryRequest {
  method: 'GET' | 'HEAD';
  /** `/v2/...`, appended to the base URL's path. */
  path: string;
  headers: Record<string, string>;
  maxRedirects: number;
  /**
   * A 429 with a short Retry-After is waited out (a client is waiting for the pull); `false`
   * fails at once instead, for background work that pauses the registry rather than wait.
   */
  waitOnRateLimit?: boolean;
}

export interface RegistryClientOptions {
  credentials: CredentialSource;
  clock: Clock;
  policy: RetryPolicy;
  sleep: Sleep;
  userAgent: string;
  maxRetryAfterMs: number;
  timeouts: Timeouts;
  connectionsPerOrigin: number;
  addressRule?: AddressRuleOverrides;
  observer?: UpstreamObserver;
}

/**
 * Test seams for the address rule of destinations.ts; production passes neither. `resolve`
 * replaces node:dns, so a test can make a name resolve to a forbidden address; `registryReach`
 * decides whether a configured registry counts as private, so a fake registry on loopback can
 * play a public one (every test server lives on 127.0.0.1, which is private).
 */
export interface AddressRuleOverrides {
  resolve?: Resolver;
  registryReach?: ReachDecider;
}

const TOKEN_BODY_LIMIT = 64 * 1024;

/**
 * One registry exchange with everything around it: the auth challenge, retries with backoff on
 * resets and 5xx, 429 with Retry-After, and rate-limit bookkeeping. `consume` turns a final
 * response into a result inside the retry loop, so a reset while reading a manifest body is
 * retried like a reset before the headers.
 */
export class RegistryClient {
  readonly #options: RegistryClientOptions;
  readonly #transport: Transport;
  readonly #auth: Authenticator;
  readonly #reach: RegistryReachCache;
  readonly #rateLimits = new Map<string, RateLimitInfo>();

  constructor(options: RegistryClientOptions) {
    this.#options = options;
    const resolve = options.addressRule?.resolve ?? systemResolver;
    this.#transport = new Transport({ ...options, resolve });
    this.#reach = new RegistryReachCache({
      resolve,
      clock: options.clock,
      ...(options.addressRule?.registryReach && { decide: options.addressRule.registryReach }),
    });
    this.#auth = new Authenticator({
      credentials: options.credentials,
      clock: options.clock,
      fetchToken: (realm, authorization, registry, origin) =>
        this.#fetchToken(realm, authorization, registry, origin),
    });
  }

  rateLimit(registry: string): RateLimitInfo | undefined {
    const info = this.#rateLimits.get(registry);
    return info ? { ...info } : undefined;
  }

  exchange<T>(
    target: Target,
    subject: Subject,
    request: RegistryRequest,
    consume: (response: RegistryResponse) => Promise<T>,
  ): Promise<T> {
    const url = new URL(target.base);
    const [pathname = '', search] = request.path.split('?', 2);
    url.pathname = `${target.base.pathname.replace(/\/$/, '')}${pathname}`;
    if (search !== undefined) url.search = `?${search}`;
    const { policy, sleep } = this.#options;
    return withRetries(
      policy,
      async () => {
        const response = await this.#authorized(target, url, request).catch(retryIfTransient);
        this.#observe(target.registry, response);
        if (response.status === 429) throw await this.#tooManyRequests(target, response, request);
        if (response.status >= 500) {
          const errors = await readRegistryErrors(response.body);
          throw new RetryableFailure(statusError(response.status, subject, errors));
        }
        return consume(response).catch((err: unknown) =>
          retryIfTransient(networkError(err, describe(request.method, response.url))),
        );
      },
      sleep,
    );
  }

  async close(): Promise<void> {
    await this.#transport.close();
  }

  /**
   * Sends with whatever auth the registry asked for before. On a 401 from the registry itself
   * (not from a CDN it redirected to) learn the challenge and try once more; once again only
   * when that refused our Basic login and the credential source has newer credentials.
   */
  async #authorized(target: Target, url: URL, request: RegistryRequest): Promise<RegistryResponse> {
    const scope = pullScope(target.repository);
    const registry: RegistryOrigin = {
      origin: target.base.origin,
      reach: await this.#reach.of(target.registry, target.base),
    };
    let sent: string | undefined;
    const send = async () => {
      sent = await this.#auth.authorization(target.registry, scope, registry);
      return this.#counted(
        target.registry,
        hubManifestGet(target, request),
        this.#transport.send(url, {
          method: request.method,
          headers: request.headers,
          authorization: sent,
          authorizedOrigin: target.base.origin,
          maxRedirects: request.maxRedirects,
          registry,
          purpose: `URL of registry ${target.registry}`,
        }),
      );
    };
    const challenged = (response: RegistryResponse) =>
      response.status === 401 && response.url.origin === target.base.origin;
    const first = await send();
    if (!challenged(first)) return first;
    const challenges = parseChallenges(first.headers['www-authenticate']);
    let learnt: boolean;
    try {
      learnt = this.#auth.learn(target.registry, challenges, target.base, registry);
    } catch (err) {
      await discard(first.body);
      throw err;
    }
    if (!learnt) return first;
    await discard(first.body);
    // The token we sent (if any) was refused: revoked, or expired earlier than announced.
    this.#auth.forget(target.registry, scope);
    const second = await send();
    if (!challenged(second) || !(await this.#auth.replacedAfterRefusal(target.registry, sent))) {
      return second;
    }
    await discard(second.body);
    return send();
  }

  /** Every request sent upstream, counted once by how it ended (a proxy would count the same). */
  async #counted(
    registry: string,
    hubManifestGet: boolean,
    sent: Promise<RegistryResponse>,
  ): Promise<RegistryResponse> {
    const observer = this.#options.observer;
    if (!observer) return sent;
    try {
      const response = await sent;
      const outcome =
        response.status === 429 ? 'throttled' : response.status >= 500 ? 'error' : 'ok';
      observer.upstreamRequest(registry, outcome, hubManifestGet);
      return response;
    } catch (error) {
      observer.upstreamRequest(registry, 'error', hubManifestGet);
      throw error;
    }
  }

  #observe(registry: string, response: RegistryResponse): void {
    const info = parseRateLimit(response.headers, this.#options.clock.now());
    if (!info) return;
    this.#options.observer?.rateLimitSeen(registry, info.remaining, info.limit);
    // Keep the source from an earlier response when this one carried only the counts.
    const previous = this.#rateLimits.get(registry);
    this.#rateLimits.set(registry, {
      ...(previous?.source ? { source: previous.source } : {}),
      ...info,
    });
  }

  /**
   * A 429 is waited out when Retry-After is short enough; otherwise the pull fails now with a
   * message saying which limit was hit and when it resets, instead of hanging for hours.
   */
  async #tooManyRequests(
    target: Target,
    response: RegistryResponse,
    request: RegistryRequest,
  ): Promise<Error> {
    const errors = await readRegistryErrors(response.body);
    const now = this.#options.clock.now();
    const header = response.headers['retry-after'];
    const waitMs = parseRetryAfter(Array.isArray(header) ? header[0] : header, now);
    const upstreamMessage = errors
      .map((entry) => entry.message)
      .filter(Boolean)
      .join('; ');
    const error = new UpstreamRateLimitedError(
      describeRateLimit(
        target.registry,
        this.#rateLimits.get(target.registry),
        waitMs,
        now,
        upstreamMessage,
      ),
      waitMs === undefined ? undefined : now + waitMs,
    );
    if (request.waitOnRateLimit === false) return error;
    if (waitMs !== undefined && waitMs > this.#options.maxRetryAfterMs) return error;
    return new RetryableFailure(error, waitMs);
  }

  /**
   * Not retried here: it runs inside an exchange, whose loop retries transient failures of the
   * token service (resets, 5xx) along with the request that needed the token.
   */
  async #fetchToken(
    realm: URL,
    authorization: string | undefined,
    registry: string,
    origin: RegistryOrigin,
  ): Promise<unknown> {
    const subject: Subject = { kind: 'token', registry };
    const response = await this.#counted(
      registry,
      false,
      this.#transport.send(realm, {
        method: 'GET',
        headers: { accept: 'application/json' },
        authorization,
        authorizedOrigin: realm.origin,
        maxRedirects: 0,
        registry: origin,
        purpose: `token realm of ${registry}`,
      }),
    );
    if (response.status !== 200) {
      throw statusError(response.status, subject, await readRegistryErrors(response.body));
    }
    let raw: Buffer;
    try {
      raw = await readCapped(
        response.body,
        response.headers['content-length'],
        `token response of ${registry}`,
        TOKEN_BODY_LIMIT,
        this.#options.timeouts.jsonBodyMs,
      );
    } catch (err) {
      throw networkError(err, describe('GET', realm));
    }
    try {
      return JSON.parse(raw.toString('utf8'));
    } catch {
      throw new UpstreamError(
        'UPSTREAM_ERROR',
        `the token service of ${registry} sent invalid JSON`,
      );
    }
  }
}

/** What Docker Hub's pull rate limit counts: a manifest GET (HEADs and blobs are free). */
function hubManifestGet(target: Target, request: RegistryRequest): boolean {
  return (
    target.registry === 'docker.io' &&
    request.method === 'GET' &&
    request.path.includes('/manifests/')
  );
}

function retryIfTransient(err: unknown): never {
  if (isTransient(err)) throw new RetryableFailure(err as Error);
  throw err;
}
