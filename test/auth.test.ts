/**
 * Access control: the scope every route needs (router level, over the table below), the token
 * CLI against a temp data folder, and the server's refusal to listen beyond loopback without
 * tokens. The docker CLI's side: auth-docker-cli.test.ts; the Lambda's: auth-aws.test.ts.
 */
import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SqliteCatalog } from '../lib/adapters/sqlite-catalog.ts';
import { SCOPES, type Scope } from '../lib/auth/scopes.ts';
import { createToken, hashToken } from '../lib/auth/tokens.ts';
import { ConfigError, parseServeArgs } from '../lib/config.ts';
import type { HttpResponse } from '../lib/engine/http.ts';
import { UI_ASSETS } from '../lib/engine/ui-routes.ts';
import { captureCli } from './support/cli-capture.ts';
import { type EngineHarness, startEngine } from './support/engine-harness.ts';
import { seedImage } from './support/seed-images.ts';
import { tempDirs, whenMissing } from './support/tmp.ts';

const temps = tempDirs('auth');
afterAll(temps.cleanupAll);

/** Written out here rather than imported, so a wrong hierarchy in lib/auth cannot pass. */
const RANK: Record<Scope, number> = { read: 0, pull: 1, write: 2, admin: 3 };

type Needed = Scope | 'open';

/**
 * Every endpoint with a request that does no harm, the scope it must need, and the status it
 * answers once allowed in (so "allowed" is checked exactly, not as "anything but 401/403").
 */
const CASES: Array<[method: string, path: string, query: string, needed: Needed, ok: number]> = [
  ['GET', '/_ping', '', 'open', 200],
  ['HEAD', '/_ping', '', 'open', 200],
  ['GET', '/version', '', 'open', 200],
  ['GET', '/images/json', '', 'read', 200],
  ['GET', '/images/missing/json', '', 'read', 404],
  ['GET', '/images/missing/history', '', 'read', 404],
  ['GET', '/images/get', 'names=missing', 'read', 404],
  ['GET', '/images/missing/get', '', 'read', 404],
  // A save that pulls what is missing writes; an image ID is never pulled, so 404 once allowed.
  ['GET', '/images/get', `names=${'ab'.repeat(32)}&pull=missing`, 'write', 404],
  ['GET', `/images/${'ab'.repeat(32)}/get`, 'pull=missing', 'write', 404],
  ['GET', '/cache/registries', '', 'read', 200],
  ['GET', '/cache/pins', '', 'read', 200],
  ['GET', '/cache/gc', '', 'read', 200],
  ['GET', '/cache/images', '', 'read', 200],
  ['GET', '/cache/jobs', '', 'read', 200],
  ['GET', '/cache/stats', '', 'read', 200],
  // The dashboard's files hold no data: open, so the page can ask for a token.
  ['GET', '/cache/ui', '', 'open', 308],
  ['GET', '/cache/ui/', '', 'open', 200],
  ['GET', `/cache/ui/${UI_ASSETS.style}`, '', 'open', 200],
  ['GET', `/cache/ui/${UI_ASSETS.script}`, '', 'open', 200],
  ['GET', '/cache/ui/app.0000000000000000.js', '', 'read', 404],
  // The embedded backend has no save exports: 404 once the token passed.
  ['GET', '/cache/exports', 'names=app:1', 'read', 404],
  // Job ids are random; an unknown one is a 404 once the token passed.
  ['GET', '/cache/jobs/0123456789abcdef0123456789abcdef', '', 'read', 404],
  ['GET', '/metrics', '', 'read', 200],
  ['GET', '/containers/json', '', 'read', 404],
  ['POST', '/images/create', '', 'pull', 400],
  ['POST', '/images/load', '', 'write', 400],
  // The embedded backend has no presigned uploads: 404 once the token passed.
  ['POST', '/cache/loads', 'size=1000', 'write', 404],
  ['POST', '/cache/loads/0f0e6b1c-55b9-4d3e-9d2a-3c5e0a1b2c3d/commit', '', 'write', 404],
  ['POST', '/images/missing/tag', 'repo=other', 'write', 404],
  ['DELETE', '/images/missing', '', 'write', 404],
  ['PUT', '/cache/pins/missing', '', 'write', 404],
  ['DELETE', '/cache/pins/missing', '', 'write', 404],
  // No body: a 400 once the token passed, and nothing starts.
  ['POST', '/cache/warm', '', 'write', 400],
  ['GET', '/cache/watch', '', 'read', 200],
  // A digest never moves: a 400 once the token passed, and nothing is watched.
  ['PUT', `/cache/watch/app@sha256:${'ab'.repeat(32)}`, '', 'write', 400],
  ['DELETE', '/cache/watch/missing:1', '', 'write', 404],
  ['POST', '/images/prune', 'filters={"dangling":["true"]}', 'admin', 200],
  ['POST', '/cache/gc', 'dryRun=1', 'admin', 200],
  ['POST', '/cache/retention', '', 'admin', 200],
];

function body(response: HttpResponse) {
  const text = typeof response.body === 'string' ? response.body : '';
  return response.headers?.['Content-Type'] === 'application/json' ? JSON.parse(text) : text;
}

describe('router: every route behind its scope', () => {
  let engine: EngineHarness;
  const tokens = {} as Record<Scope, string>;

  const call = (method: string, path: string, query = '', token?: string) =>
    engine.router({
      method,
      path,
      query: new URLSearchParams(query),
      headers: token ? { authorization: `Bearer ${token}` } : {},
    });

  beforeAll(async () => {
    engine = await startEngine(['--require-auth']);
    for (const scope of SCOPES) {
      const created = await createToken(engine.context.tokens, { scope, name: scope }, 1);
      tokens[scope] = created.token;
    }
    await seedImage(engine.context, {
      name: 'app',
      layers: [['app-layer', 2048]],
      tags: [['docker.io/library/app', '1']],
      now: engine.clock.now(),
    });
  });
  afterAll(async () => {
    await engine?.close();
  });

  it('declares a scope on every registered route, matching the table', () => {
    const routes = engine.router.routes;
    expect(routes.length).toBeGreaterThan(0);
    for (const route of routes) {
      const methods = Array.isArray(route.method) ? route.method : [route.method];
      expect(['open', ...SCOPES], `${methods} ${route.pattern}`).toContain(route.scope);
      const cases = CASES.filter(
        ([method, path]) => methods.includes(method) && route.pattern.test(path),
      );
      expect(cases.length, `a case for ${methods} ${route.pattern}`).toBeGreaterThan(0);
      for (const [method, path, query, needed] of cases) {
        // The first route that matches serves the request; only check cases it owns.
        const owner = routes.find(
          (r) =>
            (Array.isArray(r.method) ? r.method : [r.method]).includes(method) &&
            r.pattern.test(path),
        );
        if (owner !== route) continue;
        const scope = route.scopeFor?.(new URLSearchParams(query)) ?? route.scope;
        expect(scope, `${method} ${path}?${query}`).toBe(needed);
      }
    }
  });

  describe.each(CASES)('%s %s?%s', (method, path, query, needed, ok) => {
    it(`without a token: ${needed === 'open' ? 'served' : '401'}`, async () => {
      const response = await call(method, path, query);
      if (needed === 'open') {
        expect(response.status).toBe(ok);
        return;
      }
      expect(response.status).toBe(401);
      expect(response.headers?.['WWW-Authenticate']).toBe('Bearer realm="image-cache"');
      expect(body(response)).toEqual({ message: expect.stringMatching(/authentication required/) });
    });

    it.each(SCOPES)(`with a %s token: 403 below ${needed}, ${ok} from it`, async (scope) => {
      const response = await call(method, path, query, tokens[scope]);
      if (needed === 'open' || RANK[scope] >= RANK[needed]) {
        expect(response.status, JSON.stringify(body(response))).toBe(ok);
      } else {
        expect(response.status).toBe(403);
        expect(body(response)).toEqual({
          message: `token ${scope} has scope ${scope}; ${method} ${path} needs scope ${needed}`,
        });
      }
    });
  });

  it('applies to versioned paths too', async () => {
    expect((await call('GET', '/v1.47/images/json')).status).toBe(401);
    expect((await call('GET', '/v1.47/images/json', '', tokens.read)).status).toBe(200);
    expect((await call('HEAD', '/v1.47/_ping')).status).toBe(200);
  });

  it('refuses a read token deleting an image, and leaves the image and its blobs alone', async () => {
    const before = await engine.blobFiles();
    const refused = await call('DELETE', '/images/app:1', '', tokens.read);
    expect(refused.status).toBe(403);
    expect(body(refused).message).toMatch(/needs scope write/);
    expect(await engine.context.catalog.getTag('docker.io/library/app', '1')).toBeDefined();
    expect(await engine.blobFiles()).toEqual(before);
    expect((await call('GET', '/images/app:1/json', '', tokens.read)).status).toBe(200);

    // The same request with the right scope does delete: the refusal above was the check.
    const done = await call('DELETE', '/images/app:1', '', tokens.write);
    expect(done.status).toBe(200);
    expect(await engine.context.catalog.getTag('docker.io/library/app', '1')).toBeUndefined();
  });

  it.each([
    ['Basic dXNlcjpwYXNz', /unsupported Authorization header/],
    ['Bearer', /unsupported Authorization header/],
    ['Bearer ic_not-a-token', /invalid token/],
    [`Bearer ic_${'A'.repeat(43)}`, /invalid token/],
  ])('answers 401 to %j', async (authorization, message) => {
    const response = await engine.router({
      method: 'GET',
      path: '/images/json',
      query: new URLSearchParams(),
      headers: { authorization },
    });
    expect(response.status).toBe(401);
    expect(body(response).message).toMatch(message);
  });

  it('stops accepting a token once revoked, and records when a token was last used', async () => {
    const { token, record } = await createToken(engine.context.tokens, { scope: 'admin' }, 1);
    engine.clock.advance(5_000);
    expect((await call('GET', '/images/json', '', token)).status).toBe(200);
    const used = await engine.context.tokens.getTokenByHash(record.hash);
    expect(used?.lastUsedAt).toBe(engine.clock.now());
    await engine.context.tokens.deleteToken(record.id);
    const response = await call('GET', '/images/json', '', token);
    expect(response.status).toBe(401);
    expect(body(response).message).toMatch(/unknown or was revoked/);
  });
});

describe('image-cache token', () => {
  it('creates a token, shows it once, stores only its hash, lists and revokes it', async () => {
    const dir = await temps.create();
    const cli = captureCli();
    expect(
      await cli.run('token', 'create', '--scope', 'pull', '--name', 'ci', '--data', dir.path),
    ).toBe(0);
    const token = cli.out().trim();
    expect(token).toMatch(/^ic_[A-Za-z0-9_-]{43}$/);
    expect(cli.err()).toMatch(/Created token ci \(id [0-9a-f]{12}, scope pull\)/);

    const catalog = new SqliteCatalog(dir.file('catalog.db'));
    try {
      expect(await catalog.getTokenByHash(hashToken(token))).toMatchObject({
        name: 'ci',
        scope: 'pull',
        createdAt: Date.UTC(2026, 0, 2, 3, 4, 5),
      });
    } finally {
      catalog.close();
    }
    for (const file of ['catalog.db', 'catalog.db-wal']) {
      const bytes = await readFile(dir.file(file)).catch(whenMissing(Buffer.alloc(0)));
      expect(bytes.includes(token)).toBe(false);
    }

    const second = captureCli();
    expect(await second.run('token', 'create', '--scope=read', `--data=${dir.path}`)).toBe(0);
    const ls = captureCli();
    expect(await ls.run('token', 'ls', '--data', dir.path)).toBe(0);
    const lines = ls.out().trimEnd().split('\n');
    expect(lines[0]).toMatch(/^ID\s+NAME\s+SCOPE\s+CREATED\s+LAST USED$/);
    expect(lines[1]).toMatch(/^[0-9a-f]{12}\s+ci\s+pull\s+2026-01-02T03:04:05.000Z\s+never$/);
    expect(lines[2]).toMatch(/^[0-9a-f]{12}\s+read-[0-9a-f]{6}\s+read\s/);
    expect(ls.out()).not.toContain('ic_');

    const json = captureCli();
    expect(await json.run('token', 'ls', '--format', 'json', '--data', dir.path)).toBe(0);
    const entries = json
      .out()
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(entries.map((e) => e.Name)).toEqual(['ci', expect.stringMatching(/^read-/)]);

    const revoke = captureCli();
    expect(await revoke.run('token', 'revoke', 'ci', '--data', dir.path)).toBe(0);
    expect(revoke.out()).toMatch(/^Revoked token ci \(id [0-9a-f]{12}\)\n$/);
    const byId = captureCli();
    expect(await byId.run('token', 'revoke', entries[1].ID, '--data', dir.path)).toBe(0);
    const empty = captureCli();
    await empty.run('token', 'ls', '--format', 'json', '--data', dir.path);
    expect(empty.out()).toBe('');
  });

  it.each([
    [['create'], 2, /requires --scope/],
    [['create', '--scope', 'root'], 2, /invalid scope "root": use one of read, pull, write, admin/],
    [['create', '--scope', 'read', '--name', 'no spaces'], 2, /invalid token name/],
    [['revoke'], 2, /requires exactly 1 argument/],
    [['revoke', 'nobody'], 1, /no token with name or id nobody/],
    [['frobnicate'], 2, /unknown token command "frobnicate"/],
    [['ls', '--backend', 'aws'], 2, /--backend aws needs IMAGE_CACHE_BUCKET and IMAGE_CACHE_TABLE/],
  ])('token %j exits %i', async (args, code, message) => {
    const dir = await temps.create();
    const cli = captureCli();
    expect(await cli.run('token', ...args, '--data', dir.path)).toBe(code);
    expect(cli.err()).toMatch(message);
  });

  it('refuses a second token with a name in use', async () => {
    const dir = await temps.create();
    const create = () => captureCli();
    const first = create();
    expect(
      await first.run('token', 'create', '--scope', 'read', '--name', 'x', '--data', dir.path),
    ).toBe(0);
    const second = create();
    expect(
      await second.run('token', 'create', '--scope', 'admin', '--name', 'x', '--data', dir.path),
    ).toBe(1);
    expect(second.err()).toMatch(/a token named x exists/);
  });
});

describe('serve without --require-auth', () => {
  it.each(['0.0.0.0', '::', '10.1.2.3', 'cache.example.com', '::ffff:10.0.0.1'])(
    'refuses to listen on %s',
    (host) => {
      expect(() => parseServeArgs(['--host', host], {})).toThrow(ConfigError);
      expect(() => parseServeArgs(['--host', host], {})).toThrow(/add --require-auth/);
      expect(parseServeArgs(['--host', host, '--require-auth'], {}).requireAuth).toBe(true);
      expect(parseServeArgs(['--host', host], { IMAGE_CACHE_REQUIRE_AUTH: '1' }).requireAuth).toBe(
        true,
      );
    },
  );

  it.each(['127.0.0.1', '127.0.0.2', 'localhost', '::1', '[::1]', '::ffff:127.0.0.1'])(
    'listens on loopback %s without tokens',
    (host) => {
      expect(parseServeArgs(['--host', host], {})).toMatchObject({ host, requireAuth: false });
    },
  );

  it('rejects a switch value it does not understand', () => {
    expect(() => parseServeArgs([], { IMAGE_CACHE_REQUIRE_AUTH: 'maybe' })).toThrow(
      /IMAGE_CACHE_REQUIRE_AUTH: "maybe" must be 1 or 0/,
    );
  });

  it('exits with the message from `image-cache serve --host 0.0.0.0`', async () => {
    const cli = captureCli();
    expect(await cli.run('serve', '--host', '0.0.0.0', '--port', '0')).toBe(2);
    expect(cli.err()).toMatch(
      /--host 0.0.0.0 accepts connections from other machines.*--require-auth/,
    );
  });
});
