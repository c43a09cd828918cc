import { ConflictError } from '../../errors.ts';
import type { TokenRecord, TokenStore } from '../../ports/token-store.ts';
import { av, compare, tokenItem, toToken } from './items.ts';
import { keys, TOKENS_PK } from './schema.ts';
import type { Table } from './table.ts';

/** API tokens: one item each in the TOKENS partition, keyed by the token's hash. */
export class DynamoTokens implements TokenStore {
  readonly #table: Table;

  constructor(table: Table) {
    this.#table = table;
  }

  async putToken(token: TokenRecord): Promise<void> {
    const outcome = await this.#table.put(tokenItem(token), {
      ConditionExpression: 'attribute_not_exists(pk)',
    });
    if (!outcome.ok) throw new ConflictError(`a token with id ${token.id} already exists`);
  }

  async getTokenByHash(hash: string): Promise<TokenRecord | undefined> {
    const item = await this.#table.get(keys.token(hash));
    return item && toToken(item);
  }

  async listTokens(): Promise<TokenRecord[]> {
    const items = await this.#table.query({
      KeyConditionExpression: 'pk = :pk',
      ExpressionAttributeValues: { ':pk': av.s(TOKENS_PK) },
    });
    return items.map(toToken).sort((a, b) => compare(a.name, b.name) || compare(a.id, b.id));
  }

  async deleteToken(id: string): Promise<TokenRecord | undefined> {
    // A team has a handful of tokens: finding the id in the partition is one small Query.
    const found = (await this.listTokens()).find((t) => t.id === id);
    if (!found) return undefined;
    const outcome = await this.#table.delete(keys.token(found.hash), {
      ConditionExpression: 'attribute_exists(pk)',
    });
    return outcome.ok && outcome.attributes ? toToken(outcome.attributes) : undefined;
  }

  async touchToken(hash: string, now: number): Promise<void> {
    // Conditional, so a use racing a revoke cannot write the token back as a bare item.
    await this.#table.update(keys.token(hash), 'SET #lastUsedAt = :now', {
      ConditionExpression: 'attribute_exists(pk)',
      ExpressionAttributeNames: { '#lastUsedAt': 'lastUsedAt' },
      ExpressionAttributeValues: { ':now': av.n(now) },
    });
  }
}
