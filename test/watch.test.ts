/**
 * Watched references (issue 15) against the project's own server on both backends, filled from
 * a real registry behind a recording proxy with one-second intervals: a tag that moves upstream
 * is stored before any client asks and then served with no upstream request; an unchanged tag
 * costs HEADs only; a 429 or a low RateLimit-Remaining pauses the checks until the reset; the
 * hourly budget bounds background pulls; a pinned watch's pin follows the tag and goes with it.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RegistryBackgroundView, WatchView } from '../lib/watch/watches.ts';
import { stopAwsEmulators } from './support/aws-emulators.ts';
import { CACHE_BACKENDS, type CacheServer, startCacheServer } from './support/cache-server.ts';
import { runCliAgainst } from './support/cli-capture.ts';
import { type GeneratedImage, generateImage } from './support/image-factory.ts';
import { pushImage } from './support/push.ts';
import { type RecordingProxy, startRecordingProxy } from './support/recording-proxy.ts';
import { type RegistryServer, startRegistry } from './support/registry-server.ts';

afterAll(stopAwsEmulators);

interface Listing {
  watches: WatchView[];
  registries: RegistryBackgroundView[];
}

/** Polls `read` until `done` holds, or fails after `ms` with the last value seen. */
async function until<T>(read: () => Promise<T>, done: (value: T) => boolean, ms = 20_000) {
  const end = Date.now() + ms;
  let last = await read();
  while (!done(last)) {
    if (Date.now() > end) throw new Error(`gave up waiting; last: ${JSON.stringify(last)}`);
    await sleep(100);
    last = await read();
  }
  return last;
}

describe.each(CACHE_BACKENDS)('watched references (%s backend)', (backend) => {
  let registry: RegistryServer;
  let upstream: RecordingProxy;
  let cache: CacheServer;
  const versions: Record<string, GeneratedImage[]> = {};

  /** Pushes version `n` (from 0) of `repo` under tag 1. */
  const publish = async (repo: string, n: number) => {
    versions[repo] ??= [];
    const image = await generateImage({ seed: `watch-${repo}-${n}-${backend}`, layers: 1 });
    versions[repo][n] = image;
    await pushImage({ url: registry.url, repository: `library/${repo}` }, image, { tags: ['1'] });
    return image;
  };

  beforeAll(async () => {
    registry = await startRegistry();
    for (const repo of ['app', 'steady', 'limited', 'pinned', 'budget', 'flaky']) {
      await publish(repo, 0);
    }
    upstream = await startRecordingProxy(registry.url);
    cache = await startCacheServer({
      // quay.io is the same registry under a second name, with a budget of one pull an hour.
      registries: `docker.io=${upstream.url},quay.io=${upstream.url}`,
      backend,
      flags: ['--watch-tick', '100ms'],
      env: {
        IMAGE_CACHE_WATCH_MIN_EVERY: '1s',
        IMAGE_CACHE_BACKGROUND_BUDGET: 'docker.io=100/h:50%,quay.io=1/h',
      },
    });
  });

  afterAll(async () => {
    await cache?.close();
    await upstream?.close();
    await registry?.stop();
  });

  const watch = (name: string, query = 'every=1s') =>
    fetch(`${cache.url}/cache/watch/${name}?${query}`, { method: 'PUT' });
  const listing = async () => (await (await fetch(`${cache.url}/cache/watch`)).json()) as Listing;
  const watched = async (name: string) => {
    const found = (await listing()).watches.find((w) => w.name === name);
    if (!found) throw new Error(`${name} is not watched`);
    return found;
  };
  const imageId = async (name: string) => {
    const response = await fetch(`${cache.url}/v1.47/images/${name}/json`);
    return response.ok ? ((await response.json()) as { Id: string }).Id : undefined;
  };
  const jobEnded = async (id: string) => {
    const job = (await (await fetch(`${cache.url}/cache/jobs/${id}?wait=30`)).json()) as {
      status: string;
    };
    return job.status;
  };
  /** What reached the upstream for one repository since the last clear. */
  const sent = (repo: string) =>
    upstream.exchanges.filter((e) => e.path.startsWith(`/v2/library/${repo}/`));

  it('stores a tag that moved before any client asks, and serves it with no upstream request', async () => {
    const name = 'docker.io/library/app:1';
    const created = await watch('app:1');
    expect(created.status).toBe(201);
    const body = (await created.json()) as WatchView & { pulls: { id: string }[] };
    expect(body).toMatchObject({
      name,
      reference: 'app:1',
      every: '1s',
      platforms: [],
      pin: false,
    });
    // Not stored yet: the PUT started its pull at once.
    expect(body.pulls).toHaveLength(1);
    expect(await jobEnded(body.pulls[0]!.id)).toBe('succeeded');
    expect(await imageId('app:1')).toBe(versions.app![0]!.configBlob.digest);
    await until(
      () => watched(name),
      (w) => w.digest === versions.app![0]!.digest && w.lastError === null,
    );

    const moved = await publish('app', 1);
    upstream.clear();
    const changed = await until(
      () => watched(name),
      (w) => w.digest === moved.digest && w.jobs.length === 1,
    );
    expect(changed.lastChange).not.toBeNull();
    expect(await jobEnded(changed.jobs[0]!)).toBe('succeeded');
    expect(await imageId('app:1')).toBe(moved.configBlob.digest);
    // The watch fetched the new manifest and its one new layer (the config too): nothing else.
    const fetched = sent('app').filter((e) => e.method === 'GET');
    expect(fetched.map((e) => e.path).sort()).toEqual(
      [
        ...moved.blobs.map((b) => `/v2/library/app/blobs/${b.digest}`),
        expect.stringMatching(/^\/v2\/library\/app\/manifests\//),
      ].sort(),
    );

    // The first client after the move: both doors answer from the cache.
    upstream.clear();
    const pulled = await fetch(`${cache.url}/v1.47/images/create?fromImage=app&tag=1`, {
      method: 'POST',
    });
    expect(await pulled.text()).toContain(`Digest: ${moved.digest}`);
    const door = await fetch(`${cache.url}/v2/library/app/manifests/1`, {
      headers: { accept: moved.mediaType },
    });
    expect(door.headers.get('docker-content-digest')).toBe(moved.digest);
    await door.arrayBuffer();
    expect(sent('app').filter((e) => e.method === 'GET')).toEqual([]);
    expect((await fetch(`${cache.url}/cache/watch/app:1`, { method: 'DELETE' })).status).toBe(204);
  });

  it('checks an unchanged tag with manifest HEADs only', async () => {
    const name = 'docker.io/library/steady:1';
    const created = (await (await watch('steady:1')).json()) as { pulls: { id: string }[] };
    expect(await jobEnded(created.pulls[0]!.id)).toBe('succeeded');
    const first = await until(
      () => watched(name),
      (w) => w.lastCheck !== null && w.lastError === null,
    );
    // Three more checks, one second apart, each begun after the clear (a check's time is
    // taken before its HEAD, so one that began earlier cannot be counted here).
    upstream.clear();
    let seen = new Date().toISOString();
    for (let i = 0; i < 3; i++) {
      const next = await until(
        () => watched(name),
        (w) => w.lastCheck! > seen,
      );
      seen = next.lastCheck!;
      expect(next.lastChange).toBe(first.lastChange);
    }
    const requests = sent('steady');
    expect(requests.length).toBeGreaterThanOrEqual(3);
    expect(
      requests.every((e) => e.method === 'HEAD' && e.path === '/v2/library/steady/manifests/1'),
    ).toBe(true);
    await fetch(`${cache.url}/cache/watch/steady:1`, { method: 'DELETE' });
  });

  it("pauses a registry's checks on a 429 until the reset, then goes on", async () => {
    const name = 'docker.io/library/limited:1';
    const created = (await (await watch('limited:1')).json()) as { pulls: { id: string }[] };
    expect(await jobEnded(created.pulls[0]!.id)).toBe('succeeded');
    await until(
      () => watched(name),
      (w) => w.lastCheck !== null,
    );

    upstream.clear();
    upstream.intercept({
      matches: (method, path) => method === 'HEAD' && path.startsWith('/v2/library/limited/'),
      status: 429,
      headers: { 'retry-after': '5' },
      times: 1,
    });
    const paused = await until(
      () => watched(name),
      (w) => w.lastError?.includes('paused') === true,
    );
    expect(paused.lastError).toContain('429');
    const throttledAt = Date.now();
    const registryView = (await listing()).registries.find((r) => r.registry === 'docker.io');
    const pausedUntil = Date.parse(registryView!.pausedUntil!);
    expect(pausedUntil - throttledAt).toBeGreaterThan(2000);
    expect(new Date(paused.nextCheck).getTime()).toBeGreaterThanOrEqual(pausedUntil);

    // Nothing goes to the registry until the reset...
    await sleep(Math.max(0, pausedUntil - Date.now() - 300));
    expect(sent('limited').map((e) => e.status)).toEqual([429]);
    // ...and the checks resume after it.
    const resumed = await until(
      () => watched(name),
      (w) => w.lastError === null && Date.parse(w.lastCheck!) >= pausedUntil,
    );
    expect(resumed.digest).toBe(versions.limited![0]!.digest);
    const after = sent('limited').slice(1);
    expect(after.length).toBeGreaterThan(0);
    expect(after.every((e) => e.method === 'HEAD' && e.status === 200)).toBe(true);
    await fetch(`${cache.url}/cache/watch/limited:1`, { method: 'DELETE' });
  });

  it('pauses when RateLimit-Remaining is down to the share kept for clients, and pulls nothing', async () => {
    const name = 'docker.io/library/limited:1';
    await watch('limited:1');
    await until(
      () => watched(name),
      (w) => w.lastError === null && w.lastCheck !== null,
    );
    const moved = await publish('limited', 1);
    upstream.clear();
    // 5 of 10 left: the half docker.io keeps for clients (IMAGE_CACHE_BACKGROUND_BUDGET).
    upstream.intercept({
      matches: (method, path) => method === 'HEAD' && path.startsWith('/v2/library/limited/'),
      headers: { 'ratelimit-limit': '10;w=6', 'ratelimit-remaining': '5;w=6' },
      times: 1,
    });
    const paused = await until(
      () => watched(name),
      (w) => w.lastError?.includes('RateLimit-Remaining 5 of 10') === true,
    );
    expect(paused.digest).toBe(moved.digest);
    expect(sent('limited').filter((e) => e.method === 'GET')).toEqual([]);
    // After the window the quota is back, and the moved tag is pulled.
    const pulled = await until(
      () => watched(name),
      (w) => w.lastError === null && w.jobs.length === 1 && w.lastChange !== null,
    );
    expect(await jobEnded(pulled.jobs[0]!)).toBe('succeeded');
    expect(await imageId('limited:1')).toBe(moved.configBlob.digest);
    await fetch(`${cache.url}/cache/watch/limited:1`, { method: 'DELETE' });
  });

  it('starts no more background pulls than the hourly budget allows', async () => {
    const name = 'quay.io/library/budget:1';
    const created = (await (await watch('quay.io/library/budget:1')).json()) as {
      pulls: { id: string }[];
    };
    expect(await jobEnded(created.pulls[0]!.id)).toBe('succeeded');
    await until(
      () => watched(name),
      (w) => w.lastCheck !== null && w.lastError === null,
    );

    // The first move spends quay.io's one background pull of the hour...
    const second = await publish('budget', 1);
    const changed = await until(
      () => watched(name),
      (w) => w.digest === second.digest && w.jobs.length === 1,
    );
    expect(await jobEnded(changed.jobs[0]!)).toBe('succeeded');
    // ...so the next one is seen but not pulled.
    const third = await publish('budget', 2);
    upstream.clear();
    const refused = await until(
      () => watched(name),
      (w) => w.digest === third.digest && w.lastError !== null,
    );
    expect(refused.lastError).toContain('budget of 1 pulls an hour from quay.io');
    expect(refused.jobs).toEqual(changed.jobs);
    expect(sent('budget').filter((e) => e.method === 'GET')).toEqual([]);
    const quay = (await listing()).registries.find((r) => r.registry === 'quay.io');
    expect(quay).toMatchObject({ pullsPerHour: 1, pullsThisHour: 1 });
    await fetch(`${cache.url}/cache/watch/quay.io/library/budget:1`, { method: 'DELETE' });
  });

  it('shows why a background pull failed, and pulls again until the image is stored', async () => {
    const name = 'docker.io/library/flaky:1';
    const created = (await (await watch('flaky:1')).json()) as { pulls: { id: string }[] };
    expect(await jobEnded(created.pulls[0]!.id)).toBe('succeeded');
    await until(
      () => watched(name),
      (w) => w.lastError === null && w.digest !== null,
    );

    // The new image's blobs are missing upstream for a while: each pull of it fails.
    upstream.intercept({
      matches: (method, path) => method === 'GET' && path.startsWith('/v2/library/flaky/blobs/'),
      status: 404,
      headers: {},
    });
    const moved = await publish('flaky', 1);
    const failing = await until(
      () => watched(name),
      (w) => w.lastError?.includes('the last pull failed') === true,
    );
    expect(failing.digest).toBe(moved.digest);
    expect(await imageId('flaky:1')).toBe(versions.flaky![0]!.configBlob.digest);

    upstream.clearIntercepts();
    await until(
      () => watched(name),
      (w) => w.lastError === null && w.jobs.length === 1,
    );
    await until(
      () => imageId('flaky:1'),
      (id) => id === moved.configBlob.digest,
    );
    await fetch(`${cache.url}/cache/watch/flaky:1`, { method: 'DELETE' });
  });

  it('keeps a pin on the image a pinned watch follows, and unwatching removes it', async () => {
    const name = 'docker.io/library/pinned:1';
    const pins = async () =>
      (await (await fetch(`${cache.url}/cache/pins`)).json()) as {
        Name: string;
        Manifest: string;
        Note: string;
      }[];
    const created = (await (await watch('pinned:1', 'every=1s&pin=1')).json()) as {
      pulls: { id: string }[];
    };
    expect(await jobEnded(created.pulls[0]!.id)).toBe('succeeded');
    const first = versions.pinned![0]!;
    await until(pins, (list) => list.some((p) => p.Name === name && p.Manifest === first.digest));

    // A pinned image survives prune -a, which removes every image that is not pinned.
    const pruned = await fetch(
      `${cache.url}/v1.47/images/prune?filters=${encodeURIComponent('{"dangling":["false"]}')}`,
      {
        method: 'POST',
      },
    );
    expect(pruned.status).toBe(200);
    expect(await imageId('pinned:1')).toBe(first.configBlob.digest);

    const moved = await publish('pinned', 1);
    const after = await until(pins, (list) =>
      list.some((p) => p.Name === name && p.Manifest === moved.digest),
    );
    expect(after.find((p) => p.Name === name)?.Note).toBe('kept by watch');

    expect((await fetch(`${cache.url}/cache/watch/pinned:1`, { method: 'DELETE' })).status).toBe(
      204,
    );
    expect((await pins()).filter((p) => p.Name === name)).toEqual([]);
  });

  it.each([
    ['a digest', `app@sha256:${'a'.repeat(64)}`, 'every=1s', 'never moves'],
    ['an interval below the shortest', 'app:1', 'every=500ms', 'every must be between'],
    ['a registry not allowed', 'ghcr.io/o/app:1', 'every=1s', 'not allowed'],
    ['a bad platform', 'app:1', 'every=1s&platform=linux', 'invalid platform'],
    ['a bad pin flag', 'app:1', 'every=1s&pin=yes', 'pin must be'],
  ])('refuses %s with a 400 and stores nothing', async (_what, name, query, message) => {
    const before = (await listing()).watches.length;
    const answer = await watch(name, query);
    expect(answer.status).toBe(400);
    expect(((await answer.json()) as { message: string }).message).toContain(message);
    expect((await listing()).watches.length).toBe(before);
  });

  it('answers 404 to removing a watch that does not exist', async () => {
    const answer = await fetch(`${cache.url}/cache/watch/nothing:1`, { method: 'DELETE' });
    expect(answer.status).toBe(404);
  });

  it('adds, lists and removes watches with image-cache watch', async () => {
    const added = await runCliAgainst(cache.url, [
      'watch',
      'add',
      'steady:1',
      '--every',
      '1h',
      '--platform',
      'linux/arm64',
      '--pin',
    ]);
    expect(added.stderr).toBe('');
    expect(added.stdout).toContain('Watching: steady:1 every 1h for linux/arm64/v8, pinned');
    const listed = await runCliAgainst(cache.url, ['watch', 'ls']);
    expect(listed.code).toBe(0);
    expect(listed.stdout).toMatch(/steady:1\s+1h\s+linux\/arm64\/v8\s+yes/);
    expect(listed.stdout).toContain('docker.io: ');
    const json = await runCliAgainst(cache.url, ['watch', 'ls', '--format', 'json']);
    expect(JSON.parse(json.stdout.trim().split('\n')[0]!)).toMatchObject({ reference: 'steady:1' });
    const removed = await runCliAgainst(cache.url, ['watch', 'rm', 'steady:1']);
    expect(removed).toMatchObject({ code: 0, stdout: 'Unwatched: steady:1\n' });
    expect((await listing()).watches.map((w) => w.name)).not.toContain(
      'docker.io/library/steady:1',
    );
    const unknown = await runCliAgainst(cache.url, ['watch', 'frob']);
    expect(unknown.code).not.toBe(0);
  });
});
