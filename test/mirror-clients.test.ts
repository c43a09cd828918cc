/**
 * Real registry clients, none of them written by us, judge the registry door: a private dockerd
 * with `--registry-mirror` and as a plain (insecure) registry client with `docker login`,
 * containerd's `ctr image pull --hosts-dir` with hosts.toml mirrors (what Kubernetes nodes use),
 * and skopeo by registry path prefix and with a registries.conf mirror. Docker Hub and ghcr.io
 * are unreachable here, so a pull that succeeds came through the cache. The upstreams are
 * in-process FakeRegistry instances that count every request, and every expected value (image
 * IDs, digests, blob hashes) comes from the generated images themselves.
 *
 * How the clients start here as root: /work/shared/JUDGES.md; the door's own HTTP behaviour
 * is tested in mirror.test.ts.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { Digest } from '../lib/digest.ts';
import { awsEmulators, stopAwsEmulators } from './support/aws-emulators.ts';
import { type CacheServer, startCacheServer } from './support/cache-server.ts';
import { type Containerd, containerdSkipReason, startContainerd } from './support/containerd.ts';
import {
  type Dockerd,
  type DockerResult,
  dockerdSkipReason,
  startDockerd,
} from './support/dockerd.ts';
import { FakeRegistry } from './support/fake-registry.ts';
import {
  type GeneratedImage,
  type GeneratedIndex,
  generateImage,
  generateIndex,
} from './support/image-factory.ts';
import { parsePrometheusText } from './support/prometheus-text.ts';
import { type RecordingProxy, startRecordingProxy } from './support/recording-proxy.ts';
import { skipWhen } from './support/skips.ts';
import { tempDirs } from './support/tmp.ts';

const temps = tempDirs('mirror-clients');
afterAll(temps.cleanupAll);
afterAll(stopAwsEmulators);

/** The registry door's lookups and bytes served, from /metrics. */
async function doorCounts(cache: CacheServer) {
  const { samples } = parsePrometheusText(await (await fetch(`${cache.url}/metrics`)).text());
  const sum = (name: string, labels: Record<string, string>) =>
    samples
      .filter((m) => m.name === name && Object.entries(labels).every(([k, v]) => m.labels[k] === v))
      .reduce((total, m) => total + m.value, 0);
  const lookups = 'image_cache_lookups_total';
  return {
    manifestHits: sum(lookups, { door: 'registry', kind: 'manifest', result: 'hit' }),
    blobHits: sum(lookups, { door: 'registry', kind: 'blob', result: 'hit' }),
    misses: sum(lookups, { door: 'registry', result: 'miss' }),
    served: sum('image_cache_served_bytes_total', { door: 'registry' }),
  };
}

/** The platform dockerd and skopeo pick from an index on this machine. */
const HOST_ARCH = process.arch === 'x64' ? 'amd64' : process.arch;

function sha(bytes: Uint8Array): Digest {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}` as Digest;
}

function imageFor(index: GeneratedIndex, architecture: string): GeneratedImage {
  const image = index.images.find((i) => i.platform.architecture === architecture);
  if (!image) throw new Error(`no ${architecture} image in the index`);
  return image;
}

/** GETs the upstream answered, by path (manifests and blobs). */
function upstreamGets(registry: FakeRegistry): Map<string, number> {
  const counts = new Map<string, number>();
  for (const r of registry.requests) {
    if (r.method === 'GET') counts.set(r.path, (counts.get(r.path) ?? 0) + 1);
  }
  return counts;
}

function blobGets(registry: FakeRegistry, repo: string, image: GeneratedImage): number[] {
  return image.blobs.map((blob) => registry.count(registry.blobPath(repo, blob.digest), 'GET'));
}

/** The exit code and stderr of a docker, ctr or skopeo run, for one readable assertion. */
function outcome(result: DockerResult) {
  return { code: result.code, stderr: result.stderr.trim() };
}

const OK = { code: 0, stderr: '' };

/**
 * Like `outcome` for `ctr`, whose progress display sometimes logs `failed to get content info
 * ... context canceled` as a finished pull cancels it (a ctr quirk, exit code 0 regardless).
 */
function ctrOutcome(result: DockerResult) {
  const stderr = result.stderr
    .split('\n')
    .filter((line) => !/msg="failed to get content info" error="context canceled"/.test(line))
    .join('\n');
  return { code: result.code, stderr: stderr.trim() };
}

async function imageId(engine: Dockerd, ref: string): Promise<string> {
  const result = await engine.docker(['image', 'inspect', '--format', '{{.Id}}', ref]);
  expect(outcome(result)).toEqual(OK);
  return result.stdout.trim();
}

interface CachedImage {
  Id: string;
  RepoTags: string[];
  RepoDigests: string[];
}

async function cachedImages(cache: CacheServer, token?: string): Promise<CachedImage[]> {
  const response = await fetch(`${cache.url}/images/json`, {
    headers: token ? { authorization: `Bearer ${token}` } : {},
  });
  expect(response.status).toBe(200);
  return (await response.json()) as CachedImage[];
}

/** Waits until the cache's catalog tags `tag` with `id` (a fill runs ~2 s after clients left). */
async function waitForFill(cache: CacheServer, tag: string, id: string, token?: string) {
  await vi.waitFor(
    async () => {
      const images = await cachedImages(cache, token);
      expect(images.find((i) => i.RepoTags.includes(tag))?.Id).toBe(id);
    },
    { timeout: 20_000, interval: 250 },
  );
}

function run(
  binary: string,
  args: string[],
  env: Record<string, string> = {},
  timeoutMs = 120_000,
): Promise<DockerResult> {
  return new Promise((resolve) => {
    // Asynchronous on purpose: the cache serves from this very process.
    execFile(
      binary,
      args,
      { env: { PATH: process.env.PATH, ...env }, timeout: timeoutMs, maxBuffer: 64 << 20 },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

/** Checks a skopeo `dir:` copy: the manifest bytes, and every blob named by its own hash. */
async function expectDirCopy(dir: string, image: GeneratedImage) {
  expect((await readFile(`${dir}/manifest.json`)).equals(image.bytes)).toBe(true);
  const files = (await readdir(dir)).filter((f) => /^[a-f0-9]{64}$/.test(f)).sort();
  expect(files).toEqual(image.blobs.map((b) => b.digest.slice(7)).sort());
  for (const file of files) {
    expect(sha(await readFile(`${dir}/${file}`))).toBe(`sha256:${file}`);
  }
}

// ---------------------------------------------------------------------------------------------

const dockerdSkip = dockerdSkipReason();

describe(
  `dockerd with --registry-mirror pointing at the cache${dockerdSkip ? ` (skipped: ${dockerdSkip})` : ''}`,
  skipWhen(dockerdSkip),
  () => {
    let hub: FakeRegistry;
    let cache: CacheServer;
    let first: Dockerd;
    let second: Dockerd | undefined;
    let multi: GeneratedIndex;
    let web: GeneratedImage;
    let nested: GeneratedImage;
    let pinned: GeneratedImage;
    let direct: GeneratedImage;
    let moving: [GeneratedImage, GeneratedImage];

    const mirrorDaemon = () =>
      startDockerd({
        args: [
          '--registry-mirror',
          `http://${cache.hostPort}`,
          '--insecure-registry',
          cache.hostPort,
        ],
      });

    beforeAll(async () => {
      hub = await FakeRegistry.start();
      multi = await generateIndex({ seed: 'clients-multi', format: 'oci', layers: 2 });
      web = await generateImage({ seed: 'clients-web', format: 'docker', layers: 2 });
      nested = await generateImage({ seed: 'clients-nested', format: 'oci', layers: 2 });
      pinned = await generateImage({ seed: 'clients-pinned', format: 'docker', layers: 1 });
      direct = await generateImage({ seed: 'clients-direct', format: 'docker', layers: 1 });
      moving = [
        await generateImage({ seed: 'clients-moving-1', format: 'docker', layers: 1 }),
        await generateImage({ seed: 'clients-moving-2', format: 'docker', layers: 1 }),
      ];
      hub.serveIndex('library/multi', multi, '1');
      hub.serveImage('library/web', web, '2');
      hub.serveImage('team/sub/app', nested, '3');
      hub.serveImage('library/pinned', pinned);
      hub.serveImage('library/direct', direct, '1');
      hub.serveImage('library/moving', moving[0], '1');
      // A 1 s tag TTL: every pull here revalidates its tag, so the tests below see both the
      // revalidation (a tag moved upstream) and stale-if-error (the upstream gone).
      cache = await startCacheServer({
        registries: `docker.io=${hub.url.origin}`,
        flags: ['--tag-ttl', '1s', '--gc-interval', '0'],
      });
      first = await mirrorDaemon();
    });

    afterAll(async () => {
      await second?.stop();
      await first?.stop();
      await cache?.close();
      await hub?.close();
    });

    it('pulls a multi-arch OCI index it never saw, as the image of its own platform', async () => {
      const result = await first.docker(['pull', 'multi:1']);
      expect(outcome(result)).toEqual(OK);
      expect(result.stdout).toContain(`Digest: ${multi.digest}`);
      expect(result.stdout).toContain('Status: Downloaded newer image for multi:1');
      const own = imageFor(multi, HOST_ARCH);
      expect(await imageId(first, 'multi:1')).toBe(own.configBlob.digest);
      // Every blob of its platform came from the upstream once, through the cache; nothing of
      // the other platform was fetched.
      expect(blobGets(hub, 'library/multi', own)).toEqual(own.blobs.map(() => 1));
      const other = multi.images.find((i) => i !== own)!;
      expect(blobGets(hub, 'library/multi', other)).toEqual(other.blobs.map(() => 0));
    });

    it('pulls a Docker schema2 image, with the diff_ids of its config', async () => {
      const result = await first.docker(['pull', 'web:2']);
      expect(outcome(result)).toEqual(OK);
      expect(result.stdout).toContain(`Digest: ${web.digest}`);
      expect(await imageId(first, 'web:2')).toBe(web.configBlob.digest);
      const layers = await first.docker([
        'image',
        'inspect',
        '--format',
        '{{json .RootFS.Layers}}',
        'web:2',
      ]);
      expect(JSON.parse(layers.stdout)).toEqual(web.config.rootfs.diff_ids);
      expect(blobGets(hub, 'library/web', web)).toEqual(web.blobs.map(() => 1));
    });

    it('pulls a nested repository name (team/sub/app)', async () => {
      const result = await first.docker(['pull', 'team/sub/app:3']);
      expect(outcome(result)).toEqual(OK);
      expect(await imageId(first, 'team/sub/app:3')).toBe(nested.configBlob.digest);
      expect(blobGets(hub, 'team/sub/app', nested)).toEqual(nested.blobs.map(() => 1));
    });

    it('pulls by digest an image that has no tag at all', async () => {
      const result = await first.docker(['pull', `pinned@${pinned.digest}`]);
      expect(outcome(result)).toEqual(OK);
      expect(await imageId(first, `pinned@${pinned.digest}`)).toBe(pinned.configBlob.digest);
      expect(hub.count(hub.manifestPath('library/pinned', pinned.digest), 'GET')).toBe(1);
    });

    it('tags what the daemon pulled in its own catalog once the daemon went quiet', async () => {
      await waitForFill(cache, 'multi:1', imageFor(multi, HOST_ARCH).configBlob.digest);
      await waitForFill(cache, 'web:2', web.configBlob.digest);
      await waitForFill(cache, 'team/sub/app:3', nested.configBlob.digest);
      await vi.waitFor(
        async () => {
          const byDigest = (await cachedImages(cache)).find(
            (i) => i.Id === pinned.configBlob.digest,
          );
          expect(byDigest?.RepoDigests).toEqual([`pinned@${pinned.digest}`]);
        },
        { timeout: 20_000, interval: 250 },
      );
      // The fills joined what the daemon fetched: still one upstream GET per blob.
      for (const [repo, image] of [
        ['library/multi', imageFor(multi, HOST_ARCH)],
        ['library/web', web],
        ['team/sub/app', nested],
        ['library/pinned', pinned],
      ] as const) {
        expect(blobGets(hub, repo, image)).toEqual(image.blobs.map(() => 1));
      }
    });

    it('pulls 127.0.0.1:PORT/library/direct:1 from the cache as an insecure registry', async () => {
      const ref = `${cache.hostPort}/library/direct:1`;
      const result = await first.docker(['pull', ref]);
      expect(outcome(result)).toEqual(OK);
      expect(result.stdout.trim().split('\n').at(-1)).toBe(ref);
      expect(await imageId(first, ref)).toBe(direct.configBlob.digest);
      expect(blobGets(hub, 'library/direct', direct)).toEqual(direct.blobs.map(() => 1));
      await waitForFill(cache, 'direct:1', direct.configBlob.digest);
    });

    it('serves a second daemon pulling the same images without a GET upstream', async () => {
      second = await mirrorDaemon();
      const before = upstreamGets(hub);
      const counted = await doorCounts(cache);
      for (const ref of ['multi:1', 'web:2', 'team/sub/app:3', `pinned@${pinned.digest}`]) {
        expect(outcome(await second.docker(['pull', ref])), ref).toEqual(OK);
      }
      expect(await imageId(second, 'multi:1')).toBe(imageFor(multi, HOST_ARCH).configBlob.digest);
      expect(await imageId(second, 'web:2')).toBe(web.configBlob.digest);
      expect(await imageId(second, 'team/sub/app:3')).toBe(nested.configBlob.digest);
      expect(await imageId(second, `pinned@${pinned.digest}`)).toBe(pinned.configBlob.digest);
      // Tags were revalidated (1 s TTL) with HEADs, which cost Docker Hub nothing; no manifest
      // and no blob was fetched again.
      expect(upstreamGets(hub)).toEqual(before);
      // /metrics saw the same: hits on the registry door, no new miss, bytes served.
      const after = await doorCounts(cache);
      expect(after.manifestHits - counted.manifestHits).toBeGreaterThanOrEqual(4);
      expect(after.blobHits - counted.blobHits).toBeGreaterThanOrEqual(4);
      expect(after.misses).toBe(counted.misses);
      expect(after.served).toBeGreaterThan(counted.served);
    }, 120_000);

    it('sees a tag moved upstream once its TTL passed', async () => {
      expect(outcome(await first.docker(['pull', 'moving:1']))).toEqual(OK);
      expect(await imageId(first, 'moving:1')).toBe(moving[0].configBlob.digest);
      hub.serveImage('library/moving', moving[1], '1');
      await new Promise((resolve) => setTimeout(resolve, 1500));
      const result = await first.docker(['pull', 'moving:1']);
      expect(outcome(result)).toEqual(OK);
      expect(result.stdout).toContain(`Digest: ${moving[1].digest}`);
      expect(result.stdout).toContain('Status: Downloaded newer image for moving:1');
      expect(await imageId(first, 'moving:1')).toBe(moving[1].configBlob.digest);
      // The cache's own tag follows once the fill of the new image ran.
      await waitForFill(cache, 'moving:1', moving[1].configBlob.digest);
    });

    it('keeps serving cached images to dockerd when the upstream is gone', async () => {
      const refs = ['multi:1', 'web:2'];
      expect(outcome(await second!.docker(['rmi', ...refs]))).toEqual(OK);
      await hub.close();
      // Past the tag TTL: the cache would revalidate, and finds no upstream.
      await new Promise((resolve) => setTimeout(resolve, 1200));
      for (const ref of refs) {
        expect(outcome(await second!.docker(['pull', ref])), ref).toEqual(OK);
      }
      expect(await imageId(second!, 'multi:1')).toBe(imageFor(multi, HOST_ARCH).configBlob.digest);
      expect(await imageId(second!, 'web:2')).toBe(web.configBlob.digest);
    }, 120_000);
  },
);

describe(
  `docker login and pull against a cache with --require-auth${dockerdSkip ? ` (skipped: ${dockerdSkip})` : ''}`,
  skipWhen(dockerdSkip),
  () => {
    let hub: FakeRegistry;
    let cache: CacheServer;
    let engine: Dockerd;
    let secret: GeneratedImage;
    let ref: string;
    const tokens = {} as Record<'read' | 'pull', string>;

    /** A DOCKER_CONFIG of its own per login state; `auth` is written as docker login would. */
    const configDir = async (auth?: { username: string; password: string }) => {
      const dir = await temps.create();
      if (auth) {
        const encoded = Buffer.from(`${auth.username}:${auth.password}`).toString('base64');
        await writeFile(
          dir.file('config.json'),
          JSON.stringify({ auths: { [cache.hostPort]: { auth: encoded } } }),
        );
      }
      return dir.path;
    };
    const hubRequests = () => hub.requests.filter((r) => r.path.startsWith('/v2/library/secret/'));

    beforeAll(async () => {
      hub = await FakeRegistry.start();
      secret = await generateImage({ seed: 'clients-secret', format: 'docker', layers: 2 });
      hub.serveImage('library/secret', secret, '1');
      cache = await startCacheServer({
        registries: `docker.io=${hub.url.origin}`,
        flags: ['--require-auth', '--gc-interval', '0'],
      });
      tokens.read = await cache.token('read', 'clients-read');
      tokens.pull = await cache.token('pull', 'clients-pull');
      ref = `${cache.hostPort}/library/secret:1`;
      engine = await startDockerd({ args: ['--insecure-registry', cache.hostPort] });
    });

    afterAll(async () => {
      await engine?.stop();
      await cache?.close();
      await hub?.close();
    });

    it('refuses a pull without login with the registry challenge, before asking the upstream', async () => {
      const challenge = await fetch(`${cache.url}/v2/`);
      expect(challenge.status).toBe(401);
      expect(challenge.headers.get('www-authenticate')).toBe(
        `Bearer realm="http://${cache.hostPort}/v2/token",service="image-cache"`,
      );
      const result = await engine.docker(['pull', ref], { configDir: await configDir() });
      expect(result.code).not.toBe(0);
      expect(result.stderr).toContain('unauthorized: log in with an image-cache token');
      expect(hubRequests()).toEqual([]);
    });

    it('refuses docker login, and a pull, with a token that does not exist', async () => {
      const wrong = `ic_${'A'.repeat(43)}`;
      const login = await engine.docker(['login', cache.hostPort, '-u', 'anyone', '-p', wrong], {
        configDir: await configDir(),
      });
      expect(login.code).not.toBe(0);
      expect(login.stderr).toContain('unauthorized: invalid token');
      const pull = await engine.docker(['pull', ref], {
        configDir: await configDir({ username: 'anyone', password: wrong }),
      });
      expect(pull.code).not.toBe(0);
      expect(pull.stderr).toContain('unauthorized: invalid token');
      expect(hubRequests()).toEqual([]);
    });

    it('lets a read token log in, but not fetch what the cache does not hold', async () => {
      const dir = await configDir();
      const login = await engine.docker(
        ['login', cache.hostPort, '-u', 'reader', '-p', tokens.read],
        { configDir: dir },
      );
      expect(login.code).toBe(0);
      expect(login.stdout).toContain('Login Succeeded');
      const pull = await engine.docker(['pull', ref], { configDir: dir });
      expect(pull.code).not.toBe(0);
      expect(pull.stderr).toContain(
        'denied: docker.io/library/secret:1 is not cached, and fetching it from the upstream needs a token of scope pull',
      );
      expect(hubRequests().filter((r) => r.method === 'GET')).toEqual([]);
    });

    it('pulls after docker login with a pull token', async () => {
      const dir = await configDir();
      const login = await engine.docker(
        ['login', cache.hostPort, '-u', 'anyone', '-p', tokens.pull],
        { configDir: dir },
      );
      expect(login.code).toBe(0);
      expect(login.stdout).toContain('Login Succeeded');
      const pull = await engine.docker(['pull', ref], { configDir: dir });
      expect(outcome(pull)).toEqual(OK);
      expect(await imageId(engine, ref)).toBe(secret.configBlob.digest);
      expect(blobGets(hub, 'library/secret', secret)).toEqual(secret.blobs.map(() => 1));
      // Nothing the client sent reached the upstream: it has no auth, and wants none.
      expect(hub.requests.filter((r) => r.headers.authorization !== undefined)).toEqual([]);
    });

    it('lets a read token pull what is cached now', async () => {
      await waitForFill(cache, 'secret:1', secret.configBlob.digest, tokens.read);
      expect(outcome(await engine.docker(['rmi', ref]))).toEqual(OK);
      const dir = await configDir({ username: 'reader', password: tokens.read });
      const pull = await engine.docker(['pull', ref], { configDir: dir });
      expect(outcome(pull)).toEqual(OK);
      expect(await imageId(engine, ref)).toBe(secret.configBlob.digest);
      expect(blobGets(hub, 'library/secret', secret)).toEqual(secret.blobs.map(() => 1));
    });
  },
);

const containerdSkip = containerdSkipReason();

describe(
  `containerd with hosts.toml mirrors for docker.io and ghcr.io${containerdSkip ? ` (skipped: ${containerdSkip})` : ''}`,
  skipWhen(containerdSkip),
  () => {
    let hub: FakeRegistry;
    let ghcr: FakeRegistry;
    let cache: CacheServer;
    let proxy: RecordingProxy;
    let node: Containerd;
    let multi: GeneratedIndex;
    let arm64: GeneratedImage;
    let app: GeneratedImage;

    /**
     * `ctr image pull` as a node pulls. No `--plain-http` and no `skip_verify`: the mirror is
     * written `http://...` in hosts.toml, and containerd 1.6 takes the scheme from there
     * (`--plain-http` only changes the default host when no hosts.toml applies; `skip_verify`
     * is about TLS). The native snapshotter unpacks anywhere, overlay or not.
     */
    const pull = (ref: string, platform?: string) =>
      node.ctr([
        'image',
        'pull',
        '--hosts-dir',
        node.hostsDir,
        '--snapshotter',
        'native',
        ...(platform ? ['--platform', platform] : []),
        ref,
      ]);

    /** `ctr image ls` rows: ref -> { type, digest }. */
    const images = async () => {
      const result = await node.ctr(['image', 'ls']);
      expect(result.code).toBe(0);
      return new Map(
        result.stdout
          .trim()
          .split('\n')
          .slice(1)
          .map((line) => line.split(/\s+/))
          .map(([ref, type, digest]) => [ref!, { type, digest }] as const),
      );
    };
    const content = async () => {
      const result = await node.ctr(['content', 'ls', '-q']);
      expect(result.code).toBe(0);
      return new Set(result.stdout.trim().split('\n'));
    };
    const requestsFor = (repository: string) =>
      proxy.exchanges.filter((e) => e.path.startsWith(`/v2/${repository}/`));

    beforeAll(async () => {
      hub = await FakeRegistry.start();
      ghcr = await FakeRegistry.start();
      multi = await generateIndex({ seed: 'clients-ctr-multi', format: 'oci', layers: 2 });
      arm64 = imageFor(multi, 'arm64');
      app = await generateImage({ seed: 'clients-ctr-app', format: 'oci', layers: 2 });
      hub.serveIndex('library/multi', multi, '1');
      ghcr.serveImage('org/app', app, '1');
      cache = await startCacheServer({
        registries: `docker.io=${hub.url.origin},ghcr.io=${ghcr.url.origin}`,
        flags: ['--gc-interval', '0'],
      });
      // Transparent, so the tests can see the ns= containerd adds to every request.
      proxy = await startRecordingProxy(cache.url);
      node = await startContainerd();
      await node.mirror('docker.io', [proxy.url]);
      await node.mirror('ghcr.io', [proxy.url]);
    });

    afterAll(async () => {
      await node?.stop();
      await proxy?.close();
      await cache?.close();
      await hub?.close();
      await ghcr?.close();
    });

    it('pulls another platform than its own from a docker.io index, with ns=docker.io', async () => {
      const result = await pull('docker.io/library/multi:1', 'linux/arm64/v8');
      expect(ctrOutcome(result)).toEqual(OK);
      expect((await images()).get('docker.io/library/multi:1')).toEqual({
        type: multi.mediaType,
        digest: multi.digest,
      });
      const held = await content();
      for (const digest of [multi.digest, arm64.digest, ...arm64.blobs.map((b) => b.digest)]) {
        expect(held.has(digest), digest).toBe(true);
      }
      const other = imageFor(multi, 'amd64');
      for (const digest of [other.digest, ...other.blobs.map((b) => b.digest)]) {
        expect(held.has(digest), digest).toBe(false);
      }
      expect(blobGets(hub, 'library/multi', arm64)).toEqual(arm64.blobs.map(() => 1));
      expect(blobGets(hub, 'library/multi', other)).toEqual(other.blobs.map(() => 0));
      // It resolved the tag with a HEAD, and said which registry it meant on every request.
      const sent = requestsFor('library/multi');
      expect(sent[0]).toMatchObject({
        method: 'HEAD',
        path: '/v2/library/multi/manifests/1?ns=docker.io',
        status: 200,
      });
      expect(sent.filter((e) => !e.path.endsWith('?ns=docker.io'))).toEqual([]);
      expect(sent.filter((e) => e.status !== 200)).toEqual([]);
    });

    it('pulls from ghcr.io through the same cache, which asks the ghcr.io upstream', async () => {
      const result = await pull('ghcr.io/org/app:1');
      expect(ctrOutcome(result)).toEqual(OK);
      expect((await images()).get('ghcr.io/org/app:1')).toEqual({
        type: app.mediaType,
        digest: app.digest,
      });
      const held = await content();
      for (const digest of [app.digest, ...app.blobs.map((b) => b.digest)]) {
        expect(held.has(digest), digest).toBe(true);
      }
      expect(blobGets(ghcr, 'org/app', app)).toEqual(app.blobs.map(() => 1));
      expect(hub.requests.filter((r) => r.path.includes('org/app'))).toEqual([]);
      const sent = requestsFor('org/app');
      expect(sent.length).toBeGreaterThan(app.blobs.length);
      expect(sent.filter((e) => !e.path.endsWith('?ns=ghcr.io'))).toEqual([]);
    });

    it('tags both in the cache, the index under the platform containerd asked for', async () => {
      await waitForFill(cache, 'multi:1', arm64.configBlob.digest);
      await waitForFill(cache, 'ghcr.io/org/app:1', app.configBlob.digest);
      expect(blobGets(hub, 'library/multi', arm64)).toEqual(arm64.blobs.map(() => 1));
      expect(blobGets(ghcr, 'org/app', app)).toEqual(app.blobs.map(() => 1));
    });
  },
);

const skopeoSkip = ((): string | undefined => {
  if (!(process.env.PATH ?? '').split(':').some((dir) => dir && existsSync(`${dir}/skopeo`))) {
    return 'skopeo is not installed (`apt-get install -y skopeo`)';
  }
  return undefined;
})();

describe(
  `skopeo by registry path prefix and with a registries.conf mirror${skopeoSkip ? ` (skipped: ${skopeoSkip})` : ''}`,
  skipWhen(skopeoSkip),
  () => {
    let hub: FakeRegistry;
    let ghcr: FakeRegistry;
    let cache: CacheServer;
    let proxy: RecordingProxy;
    let home: string;
    let noMirrors: string;
    let multi: GeneratedIndex;
    let app: GeneratedImage;
    let crowd: GeneratedImage;

    /**
     * skopeo with a HOME of its own (no auth files) and a registries.conf of the test's (not
     * /etc/containers'); `--insecure-policy` so no policy.json is needed.
     */
    const skopeo = (registriesConf: string, ...args: string[]) =>
      run('skopeo', ['--insecure-policy', '--registries-conf', registriesConf, ...args], {
        HOME: home,
      });

    beforeAll(async () => {
      hub = await FakeRegistry.start();
      ghcr = await FakeRegistry.start();
      multi = await generateIndex({ seed: 'clients-skopeo-multi', format: 'docker', layers: 2 });
      app = await generateImage({ seed: 'clients-skopeo-app', format: 'oci', layers: 2 });
      crowd = await generateImage({
        seed: 'clients-crowd',
        format: 'docker',
        layers: [{ files: [400_000] }, { files: [2000] }],
      });
      hub.serveIndex('library/multi', multi, '1');
      hub.serveImage('library/crowd', crowd, '1');
      ghcr.serveImage('org/app', app, '1');
      cache = await startCacheServer({
        registries: `docker.io=${hub.url.origin},ghcr.io=${ghcr.url.origin}`,
        flags: ['--gc-interval', '0'],
      });
      proxy = await startRecordingProxy(cache.url);
      const dir = await temps.create();
      home = dir.path;
      noMirrors = dir.file('registries.conf');
      await writeFile(noMirrors, '');
    });

    afterAll(async () => {
      await proxy?.close();
      await cache?.close();
      await hub?.close();
      await ghcr?.close();
    });

    it('copies ghcr.io/org/app:1 by the registry path prefix, every blob hashing right', async () => {
      const dir = (await temps.create()).file('app');
      const result = await skopeo(
        noMirrors,
        'copy',
        '--src-tls-verify=false',
        `docker://${cache.hostPort}/ghcr.io/org/app:1`,
        `dir:${dir}`,
      );
      expect(outcome(result)).toEqual(OK);
      await expectDirCopy(dir, app);
      expect(blobGets(ghcr, 'org/app', app)).toEqual(app.blobs.map(() => 1));
      expect(hub.requests).toEqual([]);
      await waitForFill(cache, 'ghcr.io/org/app:1', app.configBlob.digest);
    });

    it('copies docker.io/library/multi:1 through a registries.conf mirror', async () => {
      const conf = (await temps.create()).file('registries.conf');
      await writeFile(
        conf,
        [
          '[[registry]]',
          'location = "docker.io"',
          '[[registry.mirror]]',
          `location = "${proxy.hostPort}"`,
          'insecure = true',
          '',
        ].join('\n'),
      );
      const dir = (await temps.create()).file('multi');
      const result = await skopeo(conf, 'copy', 'docker://docker.io/library/multi:1', `dir:${dir}`);
      expect(outcome(result)).toEqual(OK);
      const own = imageFor(multi, HOST_ARCH);
      await expectDirCopy(dir, own);
      expect(blobGets(hub, 'library/multi', own)).toEqual(own.blobs.map(() => 1));
      // It went to the mirror as docker.io's: /v2/library/multi/..., no ns, no path prefix.
      expect(proxy.exchanges.map((e) => `${e.method} ${e.path}`)).toContain(
        `GET /v2/library/multi/manifests/${own.digest}`,
      );
      await waitForFill(cache, 'multi:1', own.configBlob.digest);
    });

    it('fetches each blob once upstream for ten skopeo copies that miss the same image at once', async () => {
      const big = crowd.layers[0]!;
      const bigPath = `/v2/library/crowd/blobs/${big.digest}`;
      // The upstream holds the big layer back until all ten clients asked the cache for it (or
      // 20 s went by), so the ten misses overlap for certain.
      const allAsked = new Promise<void>((resolve) => {
        const deadline = Date.now() + 20_000;
        const poll = setInterval(() => {
          const asked = proxy.exchanges.filter((e) => e.method === 'GET' && e.path === bigPath);
          if (asked.length >= 10 || Date.now() > deadline) {
            clearInterval(poll);
            resolve();
          }
        }, 20);
      });
      hub.inject(hub.blobPath('library/crowd', big.digest), {
        kind: 'slow',
        chunkBytes: 64 * 1024,
        delayMs: 1,
        gate: { afterBytes: 64 * 1024, open: allAsked },
      });
      const dirs = await Promise.all(
        Array.from({ length: 10 }, async (_, i) => (await temps.create()).file(`crowd-${i}`)),
      );
      const results = await Promise.all(
        dirs.map((dir) =>
          skopeo(
            noMirrors,
            'copy',
            '--src-tls-verify=false',
            `docker://${proxy.hostPort}/library/crowd:1`,
            `dir:${dir}`,
          ),
        ),
      );
      for (const result of results) {
        expect(outcome(result)).toEqual(OK);
      }
      for (const dir of dirs) await expectDirCopy(dir, crowd);
      expect(proxy.exchanges.filter((e) => e.method === 'GET' && e.path === bigPath)).toHaveLength(
        10,
      );
      expect(blobGets(hub, 'library/crowd', crowd)).toEqual(crowd.blobs.map(() => 1));
      expect(hub.count(hub.manifestPath('library/crowd', '1'), 'GET')).toBe(1);
      // And the fill that tags it joins what is stored: still one GET per blob.
      await waitForFill(cache, 'crowd:1', crowd.configBlob.digest);
      expect(blobGets(hub, 'library/crowd', crowd)).toEqual(crowd.blobs.map(() => 1));
    }, 120_000);
  },
);

describe(
  `dockerd against the cache on the AWS backend${dockerdSkip ? ` (skipped: ${dockerdSkip})` : ''}`,
  skipWhen(dockerdSkip),
  () => {
    let hub: FakeRegistry;
    let cache: CacheServer;
    let proxy: RecordingProxy;
    let first: Dockerd;
    let second: Dockerd | undefined;
    let image: GeneratedImage;
    const blobExchanges = () =>
      proxy.exchanges.filter((e) => e.method === 'GET' && e.path.includes('/blobs/'));

    beforeAll(async () => {
      hub = await FakeRegistry.start();
      image = await generateImage({ seed: 'clients-aws', format: 'docker', layers: 2 });
      hub.serveImage('library/cloud', image, '1');
      cache = await startCacheServer({
        registries: `docker.io=${hub.url.origin}`,
        flags: ['--gc-interval', '0'],
        backend: 'aws',
      });
      proxy = await startRecordingProxy(cache.url);
      first = await startDockerd({ args: ['--registry-mirror', proxy.url] });
    });

    afterAll(async () => {
      await second?.stop();
      await first?.stop();
      await proxy?.close();
      await cache?.close();
      await hub?.close();
    });

    it('fills the cache from a first pull, streaming the blobs it did not hold', async () => {
      const result = await first.docker(['pull', 'cloud:1']);
      expect(outcome(result)).toEqual(OK);
      expect(await imageId(first, 'cloud:1')).toBe(image.configBlob.digest);
      expect(blobExchanges().map((e) => e.status)).toEqual(image.blobs.map(() => 200));
      await waitForFill(cache, 'cloud:1', image.configBlob.digest);
      expect(blobGets(hub, 'library/cloud', image)).toEqual(image.blobs.map(() => 1));
    });

    it('answers a cached blob with a 307 to the S3 emulator, which serves its bytes', async () => {
      const s3 = new URL((await awsEmulators()).env.AWS_ENDPOINT_URL_S3!);
      for (const blob of image.blobs) {
        const response = await fetch(`${cache.url}/v2/library/cloud/blobs/${blob.digest}`, {
          redirect: 'manual',
        });
        expect(response.status).toBe(307);
        const location = new URL(response.headers.get('location')!);
        expect(location.origin).toBe(s3.origin);
        expect(location.pathname).toContain(`blobs/sha256/${blob.digest.slice(7)}`);
        const stored = await fetch(location);
        expect(stored.status).toBe(200);
        expect(sha(Buffer.from(await stored.arrayBuffer()))).toBe(blob.digest);
      }
    });

    it('serves a second daemon by redirect: it follows the 307s and gets the same image', async () => {
      second = await startDockerd({ args: ['--registry-mirror', proxy.url] });
      proxy.clear();
      const before = upstreamGets(hub);
      const result = await second.docker(['pull', 'cloud:1']);
      expect(outcome(result)).toEqual(OK);
      expect(await imageId(second, 'cloud:1')).toBe(image.configBlob.digest);
      const layers = await second.docker([
        'image',
        'inspect',
        '--format',
        '{{json .RootFS.Layers}}',
        'cloud:1',
      ]);
      expect(JSON.parse(layers.stdout)).toEqual(image.config.rootfs.diff_ids);
      // Every blob it asked the cache for was a redirect to storage, and it asked nothing twice.
      const blobs = blobExchanges();
      expect(blobs.map((e) => e.status)).toEqual(image.blobs.map(() => 307));
      expect(new Set(blobs.map((e) => e.path)).size).toBe(image.blobs.length);
      expect(upstreamGets(hub)).toEqual(before);
    });
  },
);

describe(
  `images pulled through the mirror, after a cache restart with the upstream gone${dockerdSkip ? ` (skipped: ${dockerdSkip})` : ''}`,
  skipWhen(dockerdSkip),
  () => {
    let hub: FakeRegistry;
    let cache: CacheServer;
    let proxy: RecordingProxy;
    let engine: Dockerd;
    let dataDir: string;
    let tagged: GeneratedIndex;
    let pinned: GeneratedIndex;

    const startCache = () =>
      startCacheServer({
        registries: `docker.io=${hub.url.origin}`,
        flags: ['--gc-interval', '0'],
        dataDir,
      });

    beforeAll(async () => {
      hub = await FakeRegistry.start();
      tagged = await generateIndex({ seed: 'clients-restart-tagged', format: 'oci', layers: 1 });
      pinned = await generateIndex({ seed: 'clients-restart-pinned', format: 'oci', layers: 1 });
      hub.serveIndex('library/tagged', tagged, '1');
      hub.serveIndex('library/pinned-index', pinned, 'unused');
      dataDir = (await temps.create()).path;
      cache = await startCache();
      // The daemon keeps its mirror address; the proxy follows the cache to its new port.
      proxy = await startRecordingProxy(cache.url);
      engine = await startDockerd({ args: ['--registry-mirror', proxy.url] });

      // Kubernetes-style pins name the index: `image@sha256:<index digest>`.
      for (const ref of ['tagged:1', `pinned-index@${pinned.digest}`]) {
        expect(outcome(await engine.docker(['pull', ref])), ref).toEqual(OK);
      }
      await waitForFill(cache, 'tagged:1', imageFor(tagged, HOST_ARCH).configBlob.digest);
      await vi.waitFor(
        async () => {
          const ids = (await cachedImages(cache)).map((i) => i.Id);
          expect(ids).toContain(imageFor(pinned, HOST_ARCH).configBlob.digest);
        },
        { timeout: 20_000, interval: 250 },
      );
      expect(
        outcome(await engine.docker(['rmi', 'tagged:1', `pinned-index@${pinned.digest}`])),
      ).toEqual(OK);
      await cache.close();
      await hub.close();
      cache = await startCache();
      proxy.retarget(cache.url);
      proxy.clear();
    });

    afterAll(async () => {
      await engine?.stop();
      await proxy?.close();
      await cache?.close();
      await hub?.close();
    });

    it('serves a multi-arch image pulled by tag', async () => {
      expect(outcome(await engine.docker(['pull', 'tagged:1']))).toEqual(OK);
      expect(await imageId(engine, 'tagged:1')).toBe(imageFor(tagged, HOST_ARCH).configBlob.digest);
    });

    // Fails today: see the report. The fill of a pull by index digest stores the platform
    // manifest only (RepoDigests name@<child digest>); the index itself was only remembered in
    // memory for a minute, so after that (or a restart) `GET /v2/<name>/manifests/<index
    // digest>` goes upstream again (a Docker Hub pull each time) and answers 502 without it.
    it('serves a multi-arch image pinned by its index digest', async () => {
      const ref = `pinned-index@${pinned.digest}`;
      proxy.clear();
      const result = await engine.docker(['pull', ref]);
      expect(
        proxy.exchanges.map((e) => `${e.method} ${e.path} ${e.status}`).join('\n'),
        'what dockerd asked the cache, and was answered',
      ).toContain(`GET /v2/library/pinned-index/manifests/${pinned.digest} 200`);
      expect(outcome(result)).toEqual(OK);
      expect(await imageId(engine, ref)).toBe(imageFor(pinned, HOST_ARCH).configBlob.digest);
    });
  },
);

describe(
  `containerd against a cache with --require-auth${containerdSkip ? ` (skipped: ${containerdSkip})` : ''}`,
  skipWhen(containerdSkip),
  () => {
    let hub: FakeRegistry;
    let cache: CacheServer;
    let proxy: RecordingProxy;
    let node: Containerd;
    let token: string;
    const apps: GeneratedImage[] = [];

    const pull = (ref: string, ...flags: string[]) =>
      node.ctr([
        'image',
        'pull',
        '--hosts-dir',
        node.hostsDir,
        '--snapshotter',
        'native',
        ...flags,
        ref,
      ]);
    const digestOf = async (ref: string) => {
      const result = await node.ctr(['image', 'ls']);
      return result.stdout
        .split('\n')
        .find((line) => line.startsWith(`${ref} `))
        ?.split(/\s+/)[2];
    };

    beforeAll(async () => {
      hub = await FakeRegistry.start();
      for (const tag of ['1', '2', '3']) {
        const app = await generateImage({
          seed: `clients-ctr-auth-${tag}`,
          format: 'oci',
          layers: 1,
        });
        hub.serveImage('library/app', app, tag);
        apps.push(app);
      }
      cache = await startCacheServer({
        registries: `docker.io=${hub.url.origin}`,
        flags: ['--require-auth', '--gc-interval', '0'],
      });
      token = await cache.token('pull', 'clients-node');
      proxy = await startRecordingProxy(cache.url);
      node = await startContainerd();
    });

    afterAll(async () => {
      await node?.stop();
      await proxy?.close();
      await cache?.close();
      await hub?.close();
    });

    it('refuses a node without a token, before asking the upstream', async () => {
      await node.mirror('docker.io', [proxy.url]);
      const result = await pull('docker.io/library/app:3');
      expect(result.code).not.toBe(0);
      expect(proxy.exchanges[0]).toMatchObject({ method: 'HEAD', status: 401 });
      expect(hub.requests).toEqual([]);
    });

    it('pulls with the token in an Authorization header of hosts.toml', async () => {
      await node.mirror('docker.io', [proxy.url], {
        headers: { Authorization: `Bearer ${token}` },
      });
      proxy.clear();
      const result = await pull('docker.io/library/app:1');
      expect(ctrOutcome(result)).toEqual(OK);
      expect(await digestOf('docker.io/library/app:1')).toBe(apps[0]!.digest);
      expect(proxy.exchanges.map((e) => [e.status, e.headers.authorization])).toEqual(
        proxy.exchanges.map(() => [200, `Bearer ${token}`]),
      );
      expect(blobGets(hub, 'library/app', apps[0]!)).toEqual(apps[0]!.blobs.map(() => 1));
      // The node's token stays with the cache.
      expect(hub.requests.filter((r) => r.headers.authorization !== undefined)).toEqual([]);
    });

    it('pulls with ctr --user after the registry challenge, through the token endpoint', async () => {
      await node.mirror('docker.io', [proxy.url]);
      proxy.clear();
      const result = await pull('docker.io/library/app:2', '--user', `anyone:${token}`);
      expect(ctrOutcome(result)).toEqual(OK);
      expect(await digestOf('docker.io/library/app:2')).toBe(apps[1]!.digest);
      const [challenged] = proxy.exchanges;
      expect(challenged).toMatchObject({ method: 'HEAD', status: 401 });
      expect(challenged!.responseHeaders['www-authenticate']).toBe(
        `Bearer realm="${proxy.url}/v2/token",service="image-cache"`,
      );
      const issued = proxy.exchanges.filter(
        (e) => e.method === 'GET' && e.path.startsWith('/v2/token?'),
      );
      expect(issued.length).toBeGreaterThan(0);
      expect(issued.every((e) => e.status === 200)).toBe(true);
      const blobs = proxy.exchanges.filter((e) => e.path.includes('/blobs/'));
      expect(blobs.map((e) => [e.status, e.headers.authorization])).toEqual(
        blobs.map(() => [200, `Bearer ${token}`]),
      );
      expect(blobGets(hub, 'library/app', apps[1]!)).toEqual(apps[1]!.blobs.map(() => 1));
    });
  },
);
