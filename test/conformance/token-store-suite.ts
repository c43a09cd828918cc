import { describe, expect, it } from 'vitest';
import { digestHex, sha256 } from '../../lib/digest.ts';
import { ConflictError } from '../../lib/errors.ts';
import type { TokenRecord, TokenStore } from '../../lib/ports/token-store.ts';
import { type Conformance, freshStore } from './harness.ts';

/** The behaviour every TokenStore adapter must show; `make` gives a fresh, empty store per test. */
export const tokenStoreConformance: Conformance<TokenStore> = (name, make) => {
  describe(`TokenStore conformance: ${name}`, () => {
    const tokens = freshStore(make);

    const token = (name: string, scope: TokenRecord['scope'] = 'read'): TokenRecord => {
      const hash = digestHex(sha256(`token/${name}`));
      return { id: hash.slice(0, 12), hash, name, scope, createdAt: 1_000 };
    };

    it('stores a token and finds it by hash only', async () => {
      const ci = token('ci', 'pull');
      expect(await tokens.getTokenByHash(ci.hash)).toBeUndefined();
      await tokens.putToken(ci);
      expect(await tokens.getTokenByHash(ci.hash)).toEqual(ci);
      expect(await tokens.getTokenByHash(ci.id)).toBeUndefined();
      expect(await tokens.getTokenByHash(token('other').hash)).toBeUndefined();
    });

    it('refuses a second token with the same hash and keeps the first', async () => {
      await tokens.putToken(token('first', 'admin'));
      await expect(tokens.putToken({ ...token('first'), name: 'second' })).rejects.toBeInstanceOf(
        ConflictError,
      );
      expect(await tokens.getTokenByHash(token('first').hash)).toEqual(token('first', 'admin'));
    });

    it('lists tokens by name', async () => {
      expect(await tokens.listTokens()).toEqual([]);
      for (const name of ['zeta', 'alpha', 'mid']) await tokens.putToken(token(name));
      expect((await tokens.listTokens()).map((t) => t.name)).toEqual(['alpha', 'mid', 'zeta']);
    });

    it('records the last use, and a use never brings back a deleted token', async () => {
      const ci = token('ci');
      await tokens.putToken(ci);
      await tokens.touchToken(ci.hash, 5_000);
      expect(await tokens.getTokenByHash(ci.hash)).toEqual({ ...ci, lastUsedAt: 5_000 });
      expect(await tokens.deleteToken(ci.id)).toEqual({ ...ci, lastUsedAt: 5_000 });
      await tokens.touchToken(ci.hash, 6_000);
      expect(await tokens.getTokenByHash(ci.hash)).toBeUndefined();
      expect(await tokens.listTokens()).toEqual([]);
    });

    it('deletes by id and answers undefined for an unknown one', async () => {
      const [a, b] = [token('a'), token('b', 'write')];
      await tokens.putToken(a);
      await tokens.putToken(b);
      expect(await tokens.deleteToken('000000000000')).toBeUndefined();
      expect(await tokens.deleteToken(a.id)).toEqual(a);
      expect(await tokens.deleteToken(a.id)).toBeUndefined();
      expect(await tokens.listTokens()).toEqual([b]);
    });
  });
};
