/**
 * API tokens: `ic_` and 32 random bytes in base64url. Only the SHA-256 of a token is stored, and
 * it is also the lookup key, so checking a token is one read by hash: no secret is ever compared
 * byte by byte, and a stolen catalog holds nothing that authenticates.
 */
import { createHash, randomBytes } from 'node:crypto';
import { ConflictError, InvalidArgumentError, NotFoundError } from '../errors.ts';
import type { TokenRecord, TokenStore } from '../ports/token-store.ts';
import { isScope, SCOPES, type Scope } from './scopes.ts';

const TOKEN_PREFIX = 'ic_';
const TOKEN_BYTES = 32;
/** The shape of every token this project issues; anything else is refused without a lookup. */
export const TOKEN_PATTERN = /^ic_[A-Za-z0-9_-]{43}$/;
const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$/;
const ID_LENGTH = 12;

export function generateToken(): string {
  return `${TOKEN_PREFIX}${randomBytes(TOKEN_BYTES).toString('base64url')}`;
}

export function hashToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

export function parseScope(text: string): Scope {
  if (!isScope(text)) {
    throw new InvalidArgumentError(
      `invalid scope ${JSON.stringify(text)}: use one of ${SCOPES.join(', ')}`,
    );
  }
  return text;
}

export interface NewToken {
  /** The token itself: shown once, never stored. */
  token: string;
  record: TokenRecord;
}

/** Issues a token; names are unique so `token revoke NAME` is never ambiguous. */
export async function createToken(
  tokens: TokenStore,
  options: { scope: Scope; name?: string },
  now: number,
): Promise<NewToken> {
  const token = generateToken();
  const hash = hashToken(token);
  const id = hash.slice(0, ID_LENGTH);
  const name = options.name ?? `${options.scope}-${id.slice(0, 6)}`;
  if (!NAME_PATTERN.test(name)) {
    throw new InvalidArgumentError(
      `invalid token name ${JSON.stringify(name)}: 1-64 letters, digits and _ . @ -, starting with a letter or digit`,
    );
  }
  const existing = await tokens.listTokens();
  if (existing.some((t) => t.name === name)) {
    throw new ConflictError(`a token named ${name} exists: revoke it first or choose another name`);
  }
  const record: TokenRecord = { id, hash, name, scope: options.scope, createdAt: now };
  await tokens.putToken(record);
  return { token, record };
}

/** Revokes the token with this name or id; ambiguous or unknown names are errors. */
export async function revokeToken(store: TokenStore, nameOrId: string): Promise<TokenRecord> {
  const tokens = await store.listTokens();
  const byId = tokens.filter((t) => t.id === nameOrId);
  const matches = byId.length > 0 ? byId : tokens.filter((t) => t.name === nameOrId);
  if (matches.length === 0) throw new NotFoundError(`no token with name or id ${nameOrId}`);
  if (matches.length > 1) {
    // Two creates racing on one name can both pass the check above; make the user pick.
    throw new ConflictError(
      `${matches.length} tokens are named ${nameOrId}: revoke by id (${matches.map((t) => t.id).join(', ')})`,
    );
  }
  const removed = await store.deleteToken(matches[0]!.id);
  if (!removed) throw new NotFoundError(`no token with name or id ${nameOrId}`);
  return removed;
}
