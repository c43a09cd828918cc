import type { Scope } from '../model.ts';

/** An API token as stored: never the token itself, only its SHA-256. */
export interface TokenRecord {
  /** Short public handle (the first 12 hex digits of the hash), for `token ls` and `revoke`. */
  id: string;
  /** Hex SHA-256 of the whole token text (`ic_...`); the lookup key. */
  hash: string;
  name: string;
  scope: Scope;
  createdAt: number;
  lastUsedAt?: number;
}

/** API tokens (access control): stored by hash, looked up on every authenticated request. */
export interface TokenStore {
  /** Stores a new token; ConflictError when one with the same hash exists. */
  putToken(token: TokenRecord): Promise<void>;
  getTokenByHash(hash: string): Promise<TokenRecord | undefined>;
  /** Ordered by name, then id. */
  listTokens(): Promise<TokenRecord[]>;
  /** Removes the token with this id; answers the removed record, or undefined. */
  deleteToken(id: string): Promise<TokenRecord | undefined>;
  /** Records a use; never brings back a token that was deleted meanwhile. */
  touchToken(hash: string, now: number): Promise<void>;
}
