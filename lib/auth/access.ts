/**
 * The check the router runs before any handler: which token is this, and does its scope cover
 * the endpoint? A refusal is an UnauthorizedError or a ForbiddenError; the doors turn them into
 * their own answers (lib/engine/refusal.ts, the registry door).
 */
import { ImageCacheError } from '../errors.ts';
import type { Clock } from '../ports/clock.ts';
import type { TokenRecord, TokenStore } from '../ports/token-store.ts';
import { allows, type RouteScope } from './scopes.ts';
import { hashToken, TOKEN_PATTERN } from './tokens.ts';

export class UnauthorizedError extends ImageCacheError {
  constructor(message: string) {
    super('UNAUTHORIZED', message);
  }
}

export class ForbiddenError extends ImageCacheError {
  constructor(message: string) {
    super('FORBIDDEN', message);
  }
}

export const WWW_AUTHENTICATE = 'Bearer realm="image-cache"';

/** lastUsedAt is a hint for `token ls`, not an audit log: one write a minute per token is enough. */
const TOUCH_INTERVAL_MS = 60_000;

export class TokenAuthenticator {
  readonly #tokens: TokenStore;
  readonly #clock: Clock;

  constructor(tokens: TokenStore, clock: Clock) {
    this.#tokens = tokens;
    this.#clock = clock;
  }

  /**
   * Resolves to the token when it may call `what` (e.g. `DELETE /images/alpine`), which needs
   * `needed`; throws UnauthorizedError or ForbiddenError otherwise.
   */
  async authorize(
    authorization: string | undefined,
    needed: RouteScope,
    what: string,
  ): Promise<TokenRecord | undefined> {
    if (needed === 'open') return undefined;
    const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(authorization ?? '');
    if (!match) {
      throw new UnauthorizedError(
        authorization
          ? 'unsupported Authorization header: send "Authorization: Bearer <token>"'
          : 'authentication required: send "Authorization: Bearer <token>" ' +
              '(docker: "HttpHeaders" in config.json; image-cache: IMAGE_CACHE_TOKEN)',
      );
    }
    const token = match[1]!;
    const record = TOKEN_PATTERN.test(token)
      ? await this.#tokens.getTokenByHash(hashToken(token))
      : undefined;
    if (!record) throw new UnauthorizedError('invalid token: it is unknown or was revoked');
    if (!allows(record.scope, needed)) {
      throw new ForbiddenError(
        `token ${record.name} has scope ${record.scope}; ${what} needs scope ${needed}`,
      );
    }
    await this.#touch(record);
    return record;
  }

  async #touch(record: TokenRecord): Promise<void> {
    const now = this.#clock.now();
    if (record.lastUsedAt !== undefined && now - record.lastUsedAt < TOUCH_INTERVAL_MS) return;
    try {
      await this.#tokens.touchToken(record.hash, now);
    } catch (error) {
      // Bookkeeping only: a failed write must not refuse a request the token is good for.
      console.error('recording token use failed:', error);
    }
  }
}
