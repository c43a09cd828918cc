/**
 * `POST /cache/warm` and `image-cache warm` against the project's own server (both backends),
 * filled from a real registry behind a recording proxy, so each test sees exactly what the
 * cache asked the upstream for: a list is pulled once per image however often and however
 * concurrently it is sent, and what was warmed is then served with no upstream GET.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseWarmFile } from '../lib/cli/commands/warm.ts';
import { stopAwsEmulators } from './support/aws-emulators.ts';
import { CACHE_BACKENDS, type CacheServer, startCacheServer } from './support/cache-server.ts';
import { runCliAgainst } from './support/cli-capture.ts';
import { type GeneratedImage, generateImage } from './support/image-factory.ts';
import { pushImage } from './support/push.ts';
import { type RecordingProxy, startRecordingProxy } from './support/recording-proxy.ts';
import { type RegistryServer, startRegistry } from './support/registry-server.ts';

afterAll(stopAwsEmulators);

interface WarmAnswer {
  jobs: { reference: string; platform?: string; id: string; url: string }[];
}

describe.each(CACHE_BACKENDS)('pre-warm a list of images (%s backend)', (backend) => {
  let registry: RegistryServer;
  let upstream: RecordingProxy;
  let cache: CacheServer;
  let images: Record<'nginx' | 'redis' | 'busybox' | 'alpine', GeneratedImage>;
  let dir: string;

  beforeAll(async () => {
    registry = await startRegistry();
    images = {
      nginx: await generateImage({ seed: `warm-nginx-${backend}`, format: 'docker', layers: 2 }),
      redis: await generateImage({ seed: `warm-redis-${backend}`, layers: 1 }),
      busybox: await generateImage({ seed: `warm-busybox-${backend}`, layers: 1 }),
      alpine: await generateImage({ seed: `warm-alpine-${backend}`, layers: 1 }),
    };
    for (const [name, image] of Object.entries(images)) {
      await pushImage({ url: registry.url, repository: `library/${name}` }, image, {
        tags: ['1'],
      });
    }
    upstream = await startRecordingProxy(registry.url);
    cache = await startCacheServer({ registries: `docker.io=${upstream.url}`, backend });
    dir = await mkdtemp(join(tmpdir(), 'warm-'));
  });

  afterAll(async () => {
    await cache?.close();
    await upstream?.close();
    await registry?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const post = (body: string) =>
    fetch(`${cache.url}/cache/warm`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body,
    });

  const waitFor = async (url: string) => {
    const response = await fetch(`${cache.url}${url}?wait=60`);
    return (await response.json()) as { status: string; result?: { imageId?: string } };
  };

  /** The upstream GETs so far of one repository's manifests or blobs. */
  const gets = (repo: string, kind: 'manifests' | 'blobs') =>
    upstream.exchanges.filter(
      (e) => e.method === 'GET' && e.path.startsWith(`/v2/library/${repo}/${kind}/`),
    );

  it('pulls each image of a list once, however often it is sent at the same time', async () => {
    upstream.clear();
    const list = JSON.stringify({
      images: ['nginx:1', { reference: 'docker.io/library/redis:1' }],
    });
    const answers = await Promise.all([post(list), post(list), post(list)]);
    expect(answers.map((a) => a.status)).toEqual([202, 202, 202]);
    const bodies = (await Promise.all(answers.map((a) => a.json()))) as WarmAnswer[];
    const [first] = bodies;
    expect(first!.jobs.map((j) => j.reference)).toEqual([
      'docker.io/library/nginx:1',
      'docker.io/library/redis:1',
    ]);
    expect(new Set(first!.jobs.map((j) => j.id)).size).toBe(2);
    // Joined, not started again: every sender got the same two jobs.
    for (const body of bodies)
      expect(body.jobs.map((j) => j.id)).toEqual(first!.jobs.map((j) => j.id));

    const ended = await Promise.all(first!.jobs.map((job) => waitFor(job.url)));
    expect(ended.map((j) => j.status)).toEqual(['succeeded', 'succeeded']);
    expect(ended.map((j) => j.result?.imageId)).toEqual([
      images.nginx.configBlob.digest,
      images.redis.configBlob.digest,
    ]);
    for (const name of ['nginx', 'redis'] as const) {
      expect(gets(name, 'manifests')).toHaveLength(1);
      const fetched = gets(name, 'blobs').map((e) => e.path.split('/').at(-1));
      expect(fetched.sort()).toEqual(images[name].blobs.map((b) => b.digest).sort());
    }

    // Sent again once stored: nothing more from the upstream.
    upstream.clear();
    const again = (await (await post(list)).json()) as WarmAnswer;
    await Promise.all(again.jobs.map((job) => waitFor(job.url)));
    expect(upstream.exchanges.filter((e) => e.method === 'GET')).toEqual([]);
  });

  it('gives one job to an image a long list names many times over', async () => {
    upstream.clear();
    const names = ['alpine:1', 'docker.io/library/alpine:1', 'library/alpine:1'];
    const list = Array.from({ length: 40 }, (_, i) => names[i % names.length]);
    const answer = (await (await post(JSON.stringify({ images: list }))).json()) as WarmAnswer;
    expect(answer.jobs).toHaveLength(40);
    const ids = new Set(answer.jobs.map((j) => j.id));
    expect(ids.size).toBe(1);
    expect((await waitFor(answer.jobs[0]!.url)).status).toBe('succeeded');
    expect(gets('alpine', 'manifests')).toHaveLength(1);
  });

  it('serves what it warmed to an Engine API pull with no upstream GET', async () => {
    upstream.clear();
    const pulled = await fetch(
      `${cache.url}/v1.47/images/create?fromImage=docker.io/library/nginx&tag=1`,
      { method: 'POST' },
    );
    expect(pulled.status).toBe(200);
    expect(await pulled.text()).not.toContain('error');
    const inspected = await fetch(`${cache.url}/v1.47/images/nginx:1/json`);
    expect(((await inspected.json()) as { Id: string }).Id).toBe(images.nginx.configBlob.digest);
    expect(upstream.exchanges.filter((e) => e.method === 'GET')).toEqual([]);
  });

  it.each([
    ['bad JSON', '{"images": [', 'not JSON'],
    ['no list', '{"refs": ["busybox:1"]}', '"images"'],
    ['a bad reference', '{"images": ["busybox:1", "Bad/Name"]}', 'images[1]'],
    ['an unknown registry', '{"images": ["busybox:1", "ghcr.io/o/a:1"]}', 'ghcr.io'],
    ['a bad platform', '{"images": [{"reference": "busybox:1", "platform": "linux"}]}', 'platform'],
    ['too many images', JSON.stringify({ images: Array(501).fill('busybox:1') }), 'at most 500'],
  ])('refuses %s with a 400 and starts nothing', async (_case, body, words) => {
    upstream.clear();
    const before = await (await fetch(`${cache.url}/cache/jobs?limit=100`)).json();
    const answer = await post(body);
    expect(answer.status).toBe(400);
    expect(((await answer.json()) as { message: string }).message).toContain(words);
    expect(await (await fetch(`${cache.url}/cache/jobs?limit=100`)).json()).toEqual(before);
    expect(upstream.exchanges).toEqual([]);
  });

  it('image-cache warm -f reads a list, prints the job ids and waits for them', async () => {
    upstream.clear();
    const file = join(dir, 'images.txt');
    await writeFile(
      file,
      '# base images of the build\n\nbusybox:1\n  redis:1 --platform linux/amd64\n',
    );
    const run = await runCliAgainst(cache.url, ['warm', '-f', file, '--wait']);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    const lines = run.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^[0-9a-f]{32} {2}docker\.io\/library\/busybox:1$/);
    expect(lines[1]).toMatch(/^[0-9a-f]{32} {2}docker\.io\/library\/redis:1 \(linux\/amd64\)$/);
    expect(lines.slice(2).sort()).toEqual([
      `Pulled: docker.io/library/busybox:1 ${images.busybox.configBlob.digest}`,
      `Pulled: docker.io/library/redis:1 (linux/amd64) ${images.redis.configBlob.digest}`,
    ]);
    expect(gets('busybox', 'manifests')).toHaveLength(1);
  });

  it('image-cache warm --wait exits 1 when a pull failed', async () => {
    const file = join(dir, 'missing.txt');
    await writeFile(file, 'busybox:1\nnosuch:1\n');
    const run = await runCliAgainst(cache.url, ['warm', '-f', file, '--wait']);
    expect(run.code).toBe(1);
    expect(run.stdout).toContain('Pulled: docker.io/library/busybox:1');
    expect(run.stderr).toContain('Failed: docker.io/library/nosuch:1');
  });
});

describe('parseWarmFile', () => {
  it.each([
    ['# comment\n\n  nginx:1.27  \n', [{ reference: 'nginx:1.27' }]],
    ['redis:7 --platform linux/arm64\r\n', [{ reference: 'redis:7', platform: 'linux/arm64' }]],
    ['redis:7\t--platform=linux/arm/v7', [{ reference: 'redis:7', platform: 'linux/arm/v7' }]],
  ])('reads %j', (text, expected) => {
    expect(parseWarmFile(text)).toEqual(expected);
  });

  it.each([
    'nginx:1.27 linux/arm64',
    'nginx:1.27 --platform',
    'nginx:1.27 --platform linux/arm64 extra',
  ])('refuses %j, naming the line', (line) => {
    expect(() => parseWarmFile(`# list\n${line}\n`)).toThrow(/^line 2: /);
  });
});
