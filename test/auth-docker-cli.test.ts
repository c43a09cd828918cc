/**
 * The real docker CLI against `serve --require-auth`, sending its bearer token through
 * config.json's HttpHeaders, with tokens made by `image-cache token create`.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FsBlobStore } from '../lib/adapters/fs-blob-store.ts';
import { SqliteCatalog } from '../lib/adapters/sqlite-catalog.ts';
import { type CacheServer, startCacheServer } from './support/cache-server.ts';
import { captureCli } from './support/cli-capture.ts';
import { docker } from './support/docker-cli.ts';
import { generateImage } from './support/image-factory.ts';
import { seedImage } from './support/seed-images.ts';
import { docker25Members, writeTarFile } from './support/tarballs.ts';
import { tempDirs } from './support/tmp.ts';

const temps = tempDirs('auth-docker');
afterAll(temps.cleanupAll);

describe('the docker CLI with a bearer token in config.json', () => {
  let cache: CacheServer;
  const tokens = {} as Record<'read' | 'write', string>;
  const run = (token: string | undefined, ...args: string[]) =>
    docker(
      cache.hostPort,
      args,
      60_000,
      token ? { headers: { Authorization: `Bearer ${token}` } } : {},
    );

  beforeAll(async () => {
    cache = await startCacheServer({ registries: '', flags: ['--require-auth'] });
    // Seeded beside the running server, as another process sharing the data folder would.
    const catalog = new SqliteCatalog(join(cache.dataDir, 'catalog.db'));
    try {
      await seedImage(
        { catalog, blobs: new FsBlobStore(cache.dataDir) },
        {
          name: 'web',
          layers: [['web-layer', 4096]],
          tags: [['docker.io/library/web', '1']],
          now: Date.now(),
        },
      );
    } finally {
      catalog.close();
    }
    for (const scope of ['read', 'write'] as const) {
      const cli = captureCli();
      expect(
        await cli.run(
          'token',
          'create',
          '--scope',
          scope,
          '--name',
          `docker-${scope}`,
          '--data',
          cache.dataDir,
        ),
      ).toBe(0);
      tokens[scope] = cli.out().trim();
    }
  });
  afterAll(async () => {
    await cache?.close();
  });

  const listed = async (token: string) =>
    (await run(token, 'image', 'ls', '--format', '{{.Repository}}:{{.Tag}}')).stdout;

  it('lists images with a read token', async () => {
    const result = await run(tokens.read, 'image', 'ls', '--format', '{{.Repository}}:{{.Tag}}');
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toBe('web:1\n');
  });

  it('fails without a token, or with one that does not exist', async () => {
    const none = await run(undefined, 'image', 'ls');
    expect(none.code).not.toBe(0);
    expect(none.stderr).toMatch(/authentication required/);
    const unknown = await run(`ic_${'B'.repeat(43)}`, 'image', 'ls');
    expect(unknown.code).not.toBe(0);
    expect(unknown.stderr).toMatch(/invalid token/);
  });

  it('refuses `docker pull` and `docker load` with a read token before reading anything', async () => {
    const pulled = await run(tokens.read, 'pull', 'alpine:3');
    expect(pulled.code).not.toBe(0);
    expect(pulled.stderr).toContain(
      'token docker-read has scope read; POST /images/create needs scope pull',
    );

    const dir = await temps.create();
    const image = await generateImage({ seed: 'auth-load', layers: 1 });
    const tarball = dir.file('image.tar');
    await writeTarFile(docker25Members([{ image, tags: ['loaded:1'] }]), tarball);
    const loaded = await run(tokens.read, 'load', '-i', tarball);
    expect(loaded.code).not.toBe(0);
    expect(loaded.stderr).toContain('POST /images/load needs scope write');
    expect(await listed(tokens.read)).toBe('web:1\n');
  });

  it('refuses `docker rmi` with a read token and keeps the image; a write token removes it', async () => {
    const refused = await run(tokens.read, 'rmi', 'web:1');
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain(
      'token docker-read has scope read; DELETE /images/web:1 needs scope write',
    );
    expect(await listed(tokens.read)).toBe('web:1\n');

    const removed = await run(tokens.write, 'rmi', 'web:1');
    expect(removed.stderr).toBe('');
    expect(removed.stdout).toMatch(/^Untagged: web:1\n/);
    expect(await listed(tokens.read)).toBe('');
  });
});
