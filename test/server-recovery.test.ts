import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DeleteBucketCommand, DeleteObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { CollectorClaims, collectGarbage } from '../lib/gc.ts';
import { awsEmulators, openAwsAdapters, stopAwsEmulators } from './support/aws-emulators.ts';
import { type CacheServer, pullVia, startCacheServer } from './support/cache-server.ts';
import { FakeRegistry, pushImage } from './support/fake-registry.ts';
import { generateImage } from './support/image-factory.ts';
import { skipWhen } from './support/skips.ts';
import { docker25Members, listImages, postLoad, tarBuffer } from './support/tarballs.ts';
import { ManualClock } from './support/upstream-harness.ts';

/**
 * A bad day: a server killed in the middle of a pull, a disk that fills up. What a dead writer
 * staged is reclaimed by the next start and by every collection, without waiting for a live
 * writer's file to go idle; a full disk is a clear, logged 507-style error that stores nothing,
 * and the server works again once space is freed.
 */

const BIN = join(import.meta.dirname, '..', 'bin', 'image-cache.js');

/** Starts `image-cache serve` as a process of its own; answers its URL once it listens. */
async function spawnServer(
  dataDir: string,
  registries: string,
): Promise<{ url: string; child: ChildProcess }> {
  const child = spawn(
    process.execPath,
    [BIN, 'serve', '--port', '0', '--data', dataDir, '--gc-interval', '0'],
    { env: { PATH: process.env.PATH, IMAGE_CACHE_REGISTRIES: registries }, stdio: 'pipe' },
  );
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (chunk) => {
      out += chunk;
      const match = /listening on (http:\/\/\S+)/.exec(out);
      if (match) resolve(match[1]!);
    });
    child.on('exit', (code) => reject(new Error(`server exited with ${code}: ${out}`)));
  });
  return { url, child };
}

function tempFiles(dataDir: string): string[] {
  const tmp = join(dataDir, 'blobs/tmp');
  return existsSync(tmp) ? readdirSync(tmp) : [];
}

/** Past the 1 MiB pieces the pull gathers before writing, so the temp file has bytes in it. */
const HELD_AFTER = 2 * 1024 * 1024;

/** Temp files of layers held by `holdLayer`: those that have a first piece written. */
function layerFiles(dataDir: string): string[] {
  return tempFiles(dataDir).filter(
    (name) =>
      (statSync(join(dataDir, 'blobs/tmp', name), { throwIfNoEntry: false })?.size ?? 0) >=
      1024 * 1024,
  );
}

/** Holds the layer of `repo` after its first 2 MiB until the returned function is called. */
function holdLayer(registry: FakeRegistry, repo: string, layer: string): () => void {
  let open!: () => void;
  const gate = new Promise<void>((resolve) => {
    open = resolve;
  });
  registry.inject(registry.blobPath(repo, layer), {
    kind: 'slow',
    chunkBytes: 64 * 1024,
    delayMs: 1,
    gate: { afterBytes: HELD_AFTER, open: gate },
  });
  return open;
}

describe('a server killed in the middle of a pull (embedded backend)', () => {
  let registry: FakeRegistry;
  let dataDir: string;
  const children: ChildProcess[] = [];
  let cache: CacheServer | undefined;

  beforeEach(async () => {
    registry = await FakeRegistry.start();
    dataDir = await mkdtemp(join(tmpdir(), 'image-cache-killed-'));
  });

  afterEach(async () => {
    for (const child of children.splice(0)) child.kill('SIGKILL');
    await cache?.close();
    cache = undefined;
    await registry.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  /** A pull in a process of its own, killed once its layer is half written. */
  async function killMidPull(repo: string, layer: string): Promise<string[]> {
    const open = holdLayer(registry, repo, layer);
    const { url, child } = await spawnServer(dataDir, `docker.io=${registry.url.origin}`);
    children.push(child);
    void fetch(`${url}/images/create?fromImage=${repo}&tag=1`, { method: 'POST' })
      .then((r) => r.text())
      .catch(() => {});
    // The layer's file, not the config's: it holds what the registry let through.
    await vi.waitFor(() => expect(layerFiles(dataDir)).toHaveLength(1), { timeout: 20_000 });
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await exited;
    open();
    return tempFiles(dataDir);
  }

  it('leaves no temp file after a restart', async () => {
    const image = pushImage(registry, 'library/killed', '1', { layerSizes: [4 * 1024 * 1024] });
    const left = await killMidPull('library/killed', image.layers[0]!.digest);
    expect(left).toHaveLength(1);
    cache = await startCacheServer({
      registries: `docker.io=${registry.url.origin}`,
      dataDir,
      flags: ['--gc-interval', '0'],
    });
    expect(tempFiles(dataDir)).toEqual([]);
    const again = await pullVia(cache.url, { fromImage: 'killed', tag: '1' });
    expect(again.body).toContain('Downloaded newer image for killed:1');
  });

  it("has a collection remove a dead writer's temp file at once and keep a live one's", async () => {
    cache = await startCacheServer({
      registries: `docker.io=${registry.url.origin}`,
      dataDir,
      flags: ['--gc-interval', '0'],
    });
    // Another process on the same data dies mid-pull...
    const dead = pushImage(registry, 'library/dead', '1', { layerSizes: [4 * 1024 * 1024] });
    const [deadFile] = await killMidPull('library/dead', dead.layers[0]!.digest);
    // ...while this one is in the middle of its own.
    const live = pushImage(registry, 'library/live', '1', { layerSizes: [4 * 1024 * 1024] });
    const open = holdLayer(registry, 'library/live', live.layers[0]!.digest);
    const pull = pullVia(cache.url, { fromImage: 'live', tag: '1' });
    // Awaited below; a failure meanwhile must not count as unhandled.
    pull.catch(() => {});
    await vi.waitFor(() => expect(layerFiles(dataDir)).toHaveLength(2), { timeout: 20_000 });
    const liveFile = layerFiles(dataDir).find((name) => name !== deadFile);

    // The default grace (1h): only the dead writer's file goes.
    const report = await (await fetch(`${cache.url}/cache/gc`, { method: 'POST' })).json();
    expect(report.staging).toEqual({ files: 1, bytes: expect.any(Number) });
    expect(report.staging.bytes).toBeGreaterThan(0);
    expect(tempFiles(dataDir)).toEqual([liveFile]);
    open();
    expect((await pull).body).toContain('Downloaded newer image for live:1');
    expect(tempFiles(dataDir)).toEqual([]);
  });
});

describe('staging objects of dead writers on S3 (aws backend)', () => {
  let registry: FakeRegistry;
  let cache: CacheServer | undefined;

  beforeEach(async () => {
    registry = await FakeRegistry.start();
  });

  afterEach(async () => {
    await cache?.close();
    cache = undefined;
    await registry.close();
  });

  afterAll(stopAwsEmulators);

  it('are removed by a collection once older than the grace, client uploads are not', async () => {
    const emulators = await awsEmulators();
    cache = await startCacheServer({
      registries: `docker.io=${registry.url.origin}`,
      backend: 'aws',
      flags: ['--gc-interval', '0'],
    });
    const s3 = emulators.s3.client();
    const adapters = openAwsAdapters(emulators, cache.aws!);
    try {
      const put = (Key: string) =>
        s3.send(new PutObjectCommand({ Bucket: cache!.aws!.bucket, Key, Body: 'x' }));
      const crashed = `staging/${randomUUID()}`;
      const upload = `staging/uploads/${randomUUID()}.tar`;
      await put(crashed);
      await put(upload);
      // A collection now spares them: they could be a writer's, between its upload and copy.
      const now = await (await fetch(`${cache.url}/cache/gc?grace=0s`, { method: 'POST' })).json();
      expect(now.staging).toEqual({ files: 0, bytes: 0 });
      // One run 20 minutes later (a clock of its own) takes the crashed writer's object.
      const later = new ManualClock(Date.now() + 20 * 60_000);
      const report = await collectGarbage(
        { ...adapters, gcReports: adapters.catalog, clock: later, gcClaims: new CollectorClaims() },
        { graceMs: 0 },
      );
      expect(report.staging).toEqual({ files: 1, bytes: 1 });
      expect(await stagingKeys(cache)).toEqual([upload]);
    } finally {
      adapters.close();
      s3.destroy();
    }
  });
  it('a storage failure is logged once with its cause; clients get a plain 500 on both doors', async () => {
    const emulators = await awsEmulators();
    cache = await startCacheServer({
      registries: `docker.io=${registry.url.origin}`,
      backend: 'aws',
      flags: ['--gc-interval', '0'],
    });
    pushImage(registry, 'library/gone', '1', { layerSizes: [10_000] });
    const pulled = await pullVia(cache.url, { fromImage: 'gone', tag: '1' });
    expect(pulled.body).toContain('Downloaded newer image for gone:1');
    const [layer] = [...(await cache.blobFiles()).entries()].sort((a, b) => b[1] - a[1])[0]!;
    // The bucket disappears under the server (an operator's mistake): S3 answers NoSuchBucket,
    // which the adapter reports as INTERNAL with the bucket and key in its text.
    const s3 = emulators.s3.client();
    try {
      const keys = await cache.objectKeys('');
      for (const Key of keys)
        await s3.send(new DeleteObjectCommand({ Bucket: cache.aws!.bucket, Key }));
      await s3.send(new DeleteBucketCommand({ Bucket: cache.aws!.bucket }));
    } finally {
      s3.destroy();
    }
    const errors = vi.spyOn(console, 'error').mockImplementation(() => {});

    const image = await generateImage({ seed: 'bucket-gone', layers: [{ files: [5_000] }] });
    const engine = await postLoad(
      cache,
      await tarBuffer(docker25Members([{ image, tags: ['x:1'] }])),
    );
    const engineText = engine.text;
    expect(engine.status).toBe(500);
    expect(engine.message).toBe('internal server error');

    const registryDoor = await fetch(`${cache.url}/v2/library/gone/blobs/sha256:${layer}`);
    const doorText = await registryDoor.text();
    expect(registryDoor.status).toBe(500);
    for (const text of [engineText, doorText]) {
      expect(text).not.toContain('NoSuchBucket');
      expect(text).not.toContain(cache.aws!.bucket);
    }
    expect(JSON.parse(doorText).errors[0].code).toBe('UNKNOWN');

    // Each failure is in the log once, with the S3 code an operator can search for.
    const logged = errors.mock.calls.map((call) => call.map(String).join(' '));
    expect(logged.filter((line) => /NoSuchBucket/.test(line))).toHaveLength(2);
  });
});

async function stagingKeys(cache: CacheServer): Promise<string[]> {
  return (await cache.objectKeys('staging/')).sort();
}

describe('a full disk (embedded backend)', () => {
  const needsRoot = skipWhen(
    process.getuid?.() !== 0,
    'mounting a tmpfs of its own needs root (run the tests as root)',
  );
  let mount: string;
  let registry: FakeRegistry;
  let cache: CacheServer | undefined;

  beforeEach(async () => {
    registry = await FakeRegistry.start();
    mount = await mkdtemp(join(tmpdir(), 'image-cache-full-'));
    // A 24 MiB filesystem of our own: filling it touches nothing else on the machine.
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=24m', 'tmpfs', mount]);
    await mkdir(join(mount, 'data'));
  });

  afterEach(async () => {
    vi.restoreAllMocks();
    await cache?.close();
    cache = undefined;
    await registry.close();
    execFileSync('umount', [mount]);
    await rm(mount, { recursive: true, force: true });
  });

  /** The failure is logged once, and neither a temp file nor an image is left behind. */
  const expectLoggedOnceAndNothingStored = async (logged: unknown[][], server: CacheServer) => {
    expect(logged.filter((call) => /no space left/.test(String(call[0])))).toHaveLength(1);
    expect(tempFiles(join(mount, 'data'))).toEqual([]);
    expect(await (await fetch(`${server.url}/images/json`)).json()).toEqual([]);
  };

  it(
    'is a clear, logged error that stores nothing, and pulls work again once space is freed',
    needsRoot,
    async () => {
      const errors = vi.spyOn(console, 'error');
      cache = await startCacheServer({
        registries: `docker.io=${registry.url.origin}`,
        dataDir: join(mount, 'data'),
        flags: ['--gc-interval', '0'],
      });
      pushImage(registry, 'library/huge', '1', { layerSizes: [40 * 1024 * 1024] });
      const failed = await pullVia(cache.url, { fromImage: 'huge', tag: '1' });
      const last = failed.messages.at(-1) as { errorDetail?: { message: string } };
      expect(last.errorDetail?.message).toMatch(/no space left .*ENOSPC.*free space and try again/);
      await expectLoggedOnceAndNothingStored(errors.mock.calls, cache);

      pushImage(registry, 'library/small', '1', { layerSizes: [100_000] });
      const small = await pullVia(cache.url, { fromImage: 'small', tag: '1' });
      expect(small.body).toContain('Downloaded newer image for small:1');
    },
  );

  it(
    'answers a save with pull=missing that fills the disk with a 507 before any tarball byte',
    needsRoot,
    async () => {
      const errors = vi.spyOn(console, 'error');
      cache = await startCacheServer({
        registries: `docker.io=${registry.url.origin}`,
        dataDir: join(mount, 'data'),
        flags: ['--gc-interval', '0'],
      });
      pushImage(registry, 'library/huge', '1', { layerSizes: [40 * 1024 * 1024] });
      const answer = await fetch(`${cache.url}/images/get?names=huge:1&pull=missing`);
      expect(answer.status).toBe(507);
      expect(answer.headers.get('content-type')).toContain('application/json');
      expect(((await answer.json()) as { message: string }).message).toMatch(
        /no space left .*ENOSPC/,
      );
      await expectLoggedOnceAndNothingStored(errors.mock.calls, cache);
    },
  );

  it(
    "shows a watched tag's pull that fills the disk as the watch's error, and keeps nothing",
    needsRoot,
    async () => {
      const errors = vi.spyOn(console, 'error');
      cache = await startCacheServer({
        registries: `docker.io=${registry.url.origin}`,
        dataDir: join(mount, 'data'),
        flags: ['--gc-interval', '0', '--watch-tick', '100ms'],
        env: { IMAGE_CACHE_WATCH_MIN_EVERY: '1s' },
      });
      pushImage(registry, 'library/huge', '1', { layerSizes: [40 * 1024 * 1024] });
      const put = await fetch(`${cache.url}/cache/watch/huge:1?every=1s`, { method: 'PUT' });
      expect(put.status).toBe(201);
      const deadline = Date.now() + 30_000;
      let lastError: string | null = null;
      while (!lastError?.includes('no space left') && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 200));
        const listing = (await (await fetch(`${cache.url}/cache/watch`)).json()) as {
          watches: { lastError: string | null }[];
        };
        lastError = listing.watches[0]?.lastError ?? null;
      }
      expect(lastError).toMatch(/the last pull failed \(.*no space left .*ENOSPC/);
      // Stop the retries before counting what they left behind.
      await fetch(`${cache.url}/cache/watch/huge:1`, { method: 'DELETE' });
      await cache.close();
      cache = undefined;
      expect(errors.mock.calls.some((call) => /no space left/.test(String(call[0])))).toBe(true);
      expect(tempFiles(join(mount, 'data'))).toEqual([]);
    },
  );

  it(
    "answers a load that fills the disk with a 507, not as the client's fault",
    needsRoot,
    async () => {
      const errors = vi.spyOn(console, 'error');
      cache = await startCacheServer({
        registries: '',
        dataDir: join(mount, 'data'),
        flags: ['--gc-interval', '0'],
      });
      const image = await generateImage({
        seed: 'full-disk-load',
        layers: [{ files: [30 * 1024 * 1024] }],
      });
      const tarball = await tarBuffer(docker25Members([{ image, tags: ['big:1'] }]));
      const answer = await postLoad(cache, tarball);
      expect(answer.status).toBe(507);
      expect(answer.message).toMatch(/no space left .*ENOSPC/);
      expect(
        errors.mock.calls.filter((call) => /no space left/.test(String(call[0]))),
      ).toHaveLength(1);
      expect(tempFiles(join(mount, 'data'))).toEqual([]);
      expect(await listImages(cache)).toEqual([]);
    },
  );
});
