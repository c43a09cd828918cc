import { ConflictError } from '../../errors.ts';
import type { TokenRecord, TokenStore } from '../../ports/token-store.ts';
import { ms, type Statements, type TokenRow, toToken } from './rows.ts';

/** API tokens in the catalog file, keyed by the token's hash (the token is never stored). */
export class SqliteTokens implements TokenStore {
  readonly #statements: Statements;

  constructor(statements: Statements) {
    this.#statements = statements;
  }

  async putToken(token: TokenRecord): Promise<void> {
    try {
      this.#statements
        .sql(
          `INSERT INTO tokens (hash, id, name, scope, created_at, last_used_at)
           VALUES (?, ?, ?, ?, ?, ?)`,
        )
        .run(
          token.hash,
          token.id,
          token.name,
          token.scope,
          ms(token.createdAt),
          token.lastUsedAt === undefined ? null : ms(token.lastUsedAt),
        );
    } catch (error) {
      if ((error as { code?: string }).code?.startsWith('SQLITE_CONSTRAINT')) {
        throw new ConflictError(`a token with id ${token.id} already exists`);
      }
      throw error;
    }
  }

  async getTokenByHash(hash: string): Promise<TokenRecord | undefined> {
    const row = this.#statements.sql<TokenRow>('SELECT * FROM tokens WHERE hash = ?').get(hash);
    return row && toToken(row);
  }

  async listTokens(): Promise<TokenRecord[]> {
    return this.#statements
      .sql<TokenRow>('SELECT * FROM tokens ORDER BY name, id')
      .all()
      .map(toToken);
  }

  async deleteToken(id: string): Promise<TokenRecord | undefined> {
    const row = this.#statements
      .sql<TokenRow>('DELETE FROM tokens WHERE id = ? RETURNING *')
      .get(id);
    return row && toToken(row);
  }

  async touchToken(hash: string, now: number): Promise<void> {
    this.#statements.sql('UPDATE tokens SET last_used_at = ? WHERE hash = ?').run(ms(now), hash);
  }
}
