import { ImageCacheError, UpstreamError } from '../errors.ts';
import type { Clock } from '../ports/clock.ts';
import {
  type AuthScheme,
  basicAuthorization,
  type Challenge,
  chooseScheme,
  parseTokenResponse,
  TokenCache,
} from './auth.ts';
import type { CredentialSource } from './credential-source.ts';
import type { RegistryOrigin } from './destinations.ts';

/**
 * Fetches a token document from a realm URL. Supplied by the HTTP client so token requests use
 * the same guarded connection pool, timeouts and retries as everything else; `origin` says
 * what the realm may reach.
 */
export type TokenFetcher = (
  realm: URL,
  authorization: string | undefined,
  registry: string,
  origin: RegistryOrigin,
) => Promise<unknown>;

export interface AuthenticatorOptions {
  credentials: CredentialSource;
  clock: Clock;
  fetchToken: TokenFetcher;
}

/**
 * Remembers, per registry, which scheme its challenge asked for, so after the first 401 every
 * request carries its credentials up front instead of paying a 401 round trip each time.
 */
export class Authenticator {
  readonly #credentials: CredentialSource;
  readonly #clock: Clock;
  readonly #fetchToken: TokenFetcher;
  readonly #schemes = new Map<string, AuthScheme>();
  readonly #tokens = new TokenCache();
  // Eight layers starting at once need one token, not eight token requests.
  readonly #inFlight = new Map<string, Promise<string>>();

  constructor(options: AuthenticatorOptions) {
    this.#credentials = options.credentials;
    this.#clock = options.clock;
    this.#fetchToken = options.fetchToken;
  }

  scheme(registry: string): AuthScheme | undefined {
    return this.#schemes.get(registry);
  }

  /** Records the scheme of a 401. Returns false when the challenge offers nothing we speak. */
  learn(registry: string, challenges: Challenge[], base: URL, origin: RegistryOrigin): boolean {
    const scheme = chooseScheme(challenges, registry, base, origin);
    if (!scheme) return false;
    this.#schemes.set(registry, scheme);
    return true;
  }

  /** Drops a cached token the registry just refused, so the retry fetches a fresh one. */
  forget(registry: string, scope: string): void {
    this.#tokens.delete(TokenCache.key(registry, scope));
  }

  /**
   * The Authorization header for a request in `scope` (`repository:<name>:pull`), or undefined
   * when the registry has not asked for authentication (yet).
   */
  async authorization(
    registry: string,
    scope: string,
    origin: RegistryOrigin,
  ): Promise<string | undefined> {
    const scheme = this.#schemes.get(registry);
    if (!scheme) return undefined;
    if (scheme.kind === 'basic') {
      const credentials = await this.#credentials.get(registry);
      if (!credentials) {
        throw new UpstreamError(
          'UNAUTHORIZED',
          `${registry} requires a username and password (basic auth) and none are configured for it`,
        );
      }
      return basicAuthorization(credentials);
    }
    const key = TokenCache.key(registry, scope);
    const cached = this.#tokens.get(key, this.#clock.now());
    if (cached) return `Bearer ${cached}`;
    let pending = this.#inFlight.get(key);
    if (!pending) {
      pending = this.#requestToken(registry, scheme, scope, key, origin).finally(() => {
        this.#inFlight.delete(key);
      });
      this.#inFlight.set(key, pending);
    }
    return `Bearer ${await pending}`;
  }

  /**
   * The registry answered 401 to a request that carried `authorization`. True when that was
   * our Basic login and the source now has other credentials for the registry (a rotated
   * secret): worth one more request.
   */
  async replacedAfterRefusal(
    registry: string,
    authorization: string | undefined,
  ): Promise<boolean> {
    if (!authorization?.startsWith('Basic ')) return false;
    const current = await this.#credentials.get(registry);
    if (!current) return false;
    if (basicAuthorization(current) !== authorization) return true;
    return (await this.#credentials.refused(registry, current)) !== undefined;
  }

  async #requestToken(
    registry: string,
    scheme: Extract<AuthScheme, { kind: 'bearer' }>,
    scope: string,
    key: string,
    origin: RegistryOrigin,
  ): Promise<string> {
    const url = new URL(scheme.realm);
    if (scheme.service) url.searchParams.set('service', scheme.service);
    url.searchParams.set('scope', scope);
    const credentials = await this.#credentials.get(registry);
    let requestedAt = this.#clock.now();
    let json: unknown;
    try {
      json = await this.#fetchToken(
        url,
        credentials ? basicAuthorization(credentials) : undefined,
        registry,
        origin,
      );
    } catch (error) {
      // The token service refusing our login may mean it was rotated since we read it.
      const refused = credentials && isRefusal(error);
      const next = refused ? await this.#credentials.refused(registry, credentials) : undefined;
      if (!next) throw error;
      requestedAt = this.#clock.now();
      json = await this.#fetchToken(url, basicAuthorization(next), registry, origin);
    }
    const { token, expiresInSeconds } = parseTokenResponse(json, registry);
    // Count the lifetime from when we asked: the token service started its clock then.
    this.#tokens.set(key, token, expiresInSeconds, requestedAt);
    return token;
  }
}

function isRefusal(error: unknown): boolean {
  return error instanceof ImageCacheError && error.code === 'UNAUTHORIZED';
}

export function pullScope(repository: string): string {
  return `repository:${repository}:pull`;
}
