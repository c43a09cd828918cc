import { UpstreamError } from '../errors.ts';
import { assertSafeDestination, type RegistryOrigin, ruleFor } from './destinations.ts';

/** One challenge of a `WWW-Authenticate` header; the scheme is lowercased, params as sent. */
export interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

/** How a registry wants to be authenticated, learnt from its first 401. */
export type AuthScheme = { kind: 'bearer'; realm: URL; service?: string } | { kind: 'basic' };

export interface Credentials {
  username: string;
  password: string;
}

const TOKEN = /[!#$%&'*+.^_`|~0-9A-Za-z-]+/y;

/**
 * Parses RFC 9110 challenges: `Bearer realm="...",service="...",scope="..."`, `Basic realm=x`,
 * several per header (`Basic realm="a", Bearer realm="b"`) or several headers. The hard part
 * is the comma: it separates both params and challenges, so a token followed by `=` is a param
 * and a token followed by anything else starts the next challenge.
 */
export function parseChallenges(header: string | string[] | undefined): Challenge[] {
  if (header === undefined) return [];
  if (Array.isArray(header)) return header.flatMap((one) => parseChallenges(one));
  const challenges: Challenge[] = [];
  let pos = 0;
  const skip = (chars: RegExp) => {
    while (pos < header.length && chars.test(header[pos]!)) pos++;
  };
  const token = (): string | undefined => {
    TOKEN.lastIndex = pos;
    const match = TOKEN.exec(header);
    if (!match) return undefined;
    pos += match[0].length;
    return match[0];
  };
  const quoted = (): string => {
    let value = '';
    pos++; // opening quote
    while (pos < header.length && header[pos] !== '"') {
      if (header[pos] === '\\') pos++;
      value += header[pos] ?? '';
      pos++;
    }
    pos++; // closing quote
    return value;
  };

  while (pos < header.length) {
    skip(/[\s,]/);
    const scheme = token();
    if (!scheme) break;
    const challenge: Challenge = { scheme: scheme.toLowerCase(), params: {} };
    challenges.push(challenge);
    for (;;) {
      skip(/[\s,]/);
      const start = pos;
      const name = token();
      if (!name) break;
      skip(/\s/);
      if (header[pos] !== '=') {
        pos = start; // the next challenge's scheme
        break;
      }
      pos++;
      skip(/\s/);
      // token68 (`Basic dXNlcg==`) ends in '=' too; such a param gets an empty value.
      const value = header[pos] === '"' ? quoted() : (token() ?? '');
      challenge.params[name.toLowerCase()] = value;
    }
  }
  return challenges;
}

/**
 * Picks the scheme to use. Bearer wins over Basic (the token keeps the password off every
 * request). The realm is a URL the registry chose, so it is checked like a redirect target
 * (`origin` says whether this registry may point at private addresses; destinations.ts) and
 * must not downgrade an https registry to plain http (it receives the credentials).
 */
export function chooseScheme(
  challenges: Challenge[],
  registry: string,
  base: URL,
  origin: RegistryOrigin,
): AuthScheme | undefined {
  const bearer = challenges.find((c) => c.scheme === 'bearer');
  if (bearer) {
    const realmText = bearer.params.realm;
    let realm: URL;
    try {
      realm = new URL(realmText ?? '');
    } catch {
      throw new UpstreamError(
        'UPSTREAM_ERROR',
        `${registry} sent a bearer challenge without a valid realm URL`,
      );
    }
    assertSafeDestination(realm, `token realm of ${registry}`, ruleFor(realm, origin));
    if (base.protocol === 'https:' && realm.protocol !== 'https:') {
      throw new UpstreamError(
        'UPSTREAM_ERROR',
        `refusing token realm ${realm.origin} of ${registry}: plain http for an https registry`,
      );
    }
    const scheme: AuthScheme = { kind: 'bearer', realm };
    if (bearer.params.service) scheme.service = bearer.params.service;
    return scheme;
  }
  if (challenges.some((c) => c.scheme === 'basic')) return { kind: 'basic' };
  return undefined;
}

export function basicAuthorization(credentials: Credentials): string {
  const pair = `${credentials.username}:${credentials.password}`;
  return `Basic ${Buffer.from(pair, 'utf8').toString('base64')}`;
}

/** Distribution's token response: `token` or the OAuth2 `access_token`, `expires_in` seconds. */
export function parseTokenResponse(
  json: unknown,
  registry: string,
): { token: string; expiresInSeconds: number } {
  const body = (json ?? {}) as { token?: unknown; access_token?: unknown; expires_in?: unknown };
  const token =
    typeof body.token === 'string' && body.token !== ''
      ? body.token
      : typeof body.access_token === 'string' && body.access_token !== ''
        ? body.access_token
        : undefined;
  if (!token) {
    throw new UpstreamError('UPSTREAM_ERROR', `the token service of ${registry} sent no token`);
  }
  const expires = body.expires_in;
  // The spec's default; a missing or nonsensical value must not mean "forever".
  const expiresInSeconds = typeof expires === 'number' && expires > 0 ? expires : 60;
  return { token, expiresInSeconds };
}

/**
 * Tokens per (registry, scope) until shortly before they expire, so a pull of many layers asks
 * the token service once. The margin absorbs clock skew and the time a request spends in
 * flight: a token must still be valid when the registry checks it.
 */
export class TokenCache {
  #entries = new Map<string, { token: string; refreshAt: number }>();

  static key(registry: string, scope: string): string {
    return `${registry}\n${scope}`;
  }

  get(key: string, now: number): string | undefined {
    const entry = this.#entries.get(key);
    if (!entry) return undefined;
    if (now >= entry.refreshAt) {
      this.#entries.delete(key);
      return undefined;
    }
    return entry.token;
  }

  set(key: string, token: string, expiresInSeconds: number, now: number): void {
    const lifetime = expiresInSeconds * 1000;
    const margin = Math.min(10_000, lifetime / 10);
    this.#entries.set(key, { token, refreshAt: now + lifetime - margin });
  }

  delete(key: string): void {
    this.#entries.delete(key);
  }
}
