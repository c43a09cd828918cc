import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { humanSize } from '../lib/cli/format.ts';
import { digestHex } from '../lib/digest.ts';
import { stopAwsEmulators } from './support/aws-emulators.ts';
import { CACHE_BACKENDS, type CacheServer, startCacheServer } from './support/cache-server.ts';
import { docker } from './support/docker-cli.ts';
import {
  type GeneratedImage,
  type GeneratedIndex,
  generateImage,
  generateIndex,
} from './support/image-factory.ts';
import { pushImage, pushIndex } from './support/push.ts';
import { type RegistryServer, startRegistry } from './support/registry-server.ts';

const BIN = fileURLToPath(new URL('../bin/image-cache.js', import.meta.url));

/**
 * docker tag / rmi / image prune through the real docker CLI (client only), with the CNCF
 * registry as docker.io. Each step checks what the CLI printed and what is left in the catalog
 * and in the blob store, with every expectation derived from the generated images. Both suites
 * run over both backends: the embedded default and the AWS one on DynamoDB Local and fauxqs.
 */
afterAll(stopAwsEmulators);

describe.each(CACHE_BACKENDS)('image life cycle through the docker CLI, %s backend', (backend) => {
  let registry: RegistryServer;
  let cache: CacheServer;
  let base: GeneratedImage;
  let alpha: GeneratedImage;
  let beta: GeneratedImage;
  let gamma: GeneratedImage;
  let delta: GeneratedImage;
  let multi: GeneratedIndex;
  let amd64: GeneratedImage;

  const run = (...args: string[]) => docker(cache.hostPort, args);
  const short = (image: GeneratedImage) => digestHex(image.configBlob.digest).slice(0, 12);
  const api = (path: string, init?: RequestInit) => fetch(new URL(path, cache.url), init);

  /** hex -> size of every blob in the store. */
  const blobFiles = () => cache.blobFiles();

  function removed(before: Map<string, number>, after: Map<string, number>) {
    const gone = [...before.keys()].filter((hex) => !after.has(hex)).sort();
    return { gone, bytes: gone.reduce((sum, hex) => sum + before.get(hex)!, 0) };
  }

  const hexes = (...images: GeneratedImage[]) =>
    [...new Set(images.flatMap((i) => i.blobs.map((b) => digestHex(b.digest))))].sort();

  /** Blobs of `image` that none of `others` uses. */
  const own = (image: GeneratedImage, ...others: GeneratedImage[]) => {
    const shared = new Set(hexes(...others));
    return hexes(image).filter((hex) => !shared.has(hex));
  };

  const catalogManifests = () => cache.manifestDigests();

  async function repoTags(name: string): Promise<string[]> {
    const result = await run('image', 'inspect', '--format', '{{json .RepoTags}}', name);
    expect(result.stderr).toBe('');
    return JSON.parse(result.stdout);
  }

  beforeAll(async () => {
    registry = await startRegistry();
    base = await generateImage({ seed: 'life-base', format: 'docker', layers: 1 });
    const image = (seed: string, labels: Record<string, string>) =>
      generateImage({ seed, format: 'docker', layers: 1, baseLayers: base.layers, labels });
    alpha = await image('life-alpha', { team: 'a' });
    beta = await image('life-beta', { team: 'b' });
    gamma = await generateImage({ seed: 'life-gamma', format: 'oci', layers: 2 });
    delta = await generateImage({ seed: 'life-delta', format: 'docker', layers: 2 });
    multi = await generateIndex({ seed: 'life-multi', format: 'oci', layers: 2 });
    amd64 = multi.images.find((i) => i.platform.architecture === 'amd64')!;
    const push = (repository: string) => ({ url: registry.url, repository });
    await pushImage(push('library/alpha'), alpha, { tags: ['1'] });
    await pushImage(push('library/beta'), beta, { tags: ['1'] });
    await pushImage(push('library/gamma'), gamma, { tags: ['1'] });
    await pushImage(push('library/delta'), delta, { tags: ['1'] });
    await pushIndex(push('library/multi'), multi, { tags: ['1'] });
    // Grace and schedule off: what the tests see is what the requests did, nothing else.
    cache = await startCacheServer({
      registries: `docker.io=${registry.url}`,
      flags: ['--gc-interval', '0'],
      backend,
    });
    for (const name of ['alpha:1', 'beta:1', 'gamma:1', 'delta:1', 'multi:1']) {
      const pull = await run('pull', name);
      expect(pull.stderr).toBe('');
    }
  });

  afterAll(async () => {
    await cache?.close();
    await registry?.stop();
  });

  it('docker tag adds a name across repositories and registries, copying nothing', async () => {
    const before = await blobFiles();
    const result = await run('tag', 'alpha:1', 'localhost:5999/team/alpha:copy');
    expect(result).toEqual({ code: 0, stdout: '', stderr: '' });
    expect(await repoTags('alpha:1')).toEqual(['alpha:1', 'localhost:5999/team/alpha:copy']);
    expect(await blobFiles()).toEqual(before);
    const byId = await run('tag', short(alpha), 'other/alpha:x');
    expect(byId.code).toBe(0);
    expect(await repoTags('other/alpha:x')).toEqual([
      'alpha:1',
      'localhost:5999/team/alpha:copy',
      'other/alpha:x',
    ]);
  });

  it('answers tag errors as Docker does', async () => {
    const noRepo = await api('/images/alpha:1/tag', { method: 'POST' });
    expect(noRepo.status).toBe(400);
    const badTag = await api('/images/alpha:1/tag?repo=x&tag=-bad', { method: 'POST' });
    expect(badTag.status).toBe(400);
    expect((await badTag.json()).message).toBe('invalid tag format');
    const unknown = await run('tag', 'never:1', 'x:1');
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('No such image: never:1');
  });

  it('docker rmi of one of several tags only untags', async () => {
    const before = await blobFiles();
    const result = await run('rmi', 'localhost:5999/team/alpha:copy');
    expect(result).toEqual({
      code: 0,
      stdout: 'Untagged: localhost:5999/team/alpha:copy\n',
      stderr: '',
    });
    expect(await repoTags('alpha:1')).toEqual(['alpha:1', 'other/alpha:x']);
    expect(await blobFiles()).toEqual(before);
  });

  it('docker rmi by ID refuses an image named in several repositories without -f', async () => {
    const result = await run('rmi', short(alpha));
    expect(result.code).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr.trim()).toBe(
      `Error response from daemon: conflict: unable to delete ${short(alpha)} (must be forced) - image is referenced in multiple repositories`,
    );
  });

  it('docker rmi -f by ID untags every name and deletes the image and its own blobs', async () => {
    const before = await blobFiles();
    const result = await run('rmi', '-f', short(alpha));
    expect(result.stderr).toBe('');
    expect(result.stdout).toBe(
      [
        'Untagged: alpha:1',
        `Untagged: alpha@${alpha.digest}`,
        'Untagged: other/alpha:x',
        `Deleted: ${alpha.configBlob.digest}`,
        '',
      ].join('\n'),
    );
    // The shared base layer stays: beta still needs it.
    expect(removed(before, await blobFiles()).gone).toEqual(own(alpha, beta, gamma, delta, amd64));
    expect(await catalogManifests()).not.toContain(alpha.digest);
    const inspect = await run('image', 'inspect', 'alpha:1');
    expect(inspect.stderr).toContain('No such image: alpha:1');
  });

  it('docker rmi of the last tag untags its digest references and deletes the image', async () => {
    const before = await blobFiles();
    const result = await run('rmi', 'gamma:1');
    expect(result.stderr).toBe('');
    expect(result.stdout).toBe(
      [
        'Untagged: gamma:1',
        `Untagged: gamma@${gamma.digest}`,
        `Deleted: ${gamma.configBlob.digest}`,
        '',
      ].join('\n'),
    );
    expect(removed(before, await blobFiles()).gone).toEqual(hexes(gamma));
  });

  it('docker rmi --no-prune leaves the blobs to the next collection', async () => {
    const before = await blobFiles();
    const result = await run('rmi', '--no-prune', 'delta:1');
    expect(result.stdout).toContain(`Deleted: ${delta.configBlob.digest}`);
    expect(await blobFiles()).toEqual(before);
    const dry = await (await api('/cache/gc?dryRun=1&grace=0s', { method: 'POST' })).json();
    expect(dry.dryRun).toBe(true);
    expect(await blobFiles()).toEqual(before);
    const gc = await (await api('/cache/gc?grace=0s', { method: 'POST' })).json();
    const gone = removed(before, await blobFiles());
    expect(gone.gone).toEqual(hexes(delta));
    expect(gc.deleted).toEqual({ blobs: gone.gone.length, bytes: gone.bytes });
    expect(dry.deleted).toEqual(gc.deleted);
    const reports = await (await api('/cache/gc')).json();
    expect(reports[0].id).toBe(gc.id);
  });

  it('docker image prune -f removes dangling images only and reports the bytes it freed', async () => {
    // Re-pointing beta:1 leaves the beta image without a tag (but with its digest reference).
    expect((await run('tag', 'multi:1', 'beta:1')).code).toBe(0);
    const before = await blobFiles();
    const result = await run('image', 'prune', '-f');
    expect(result.stderr).toBe('');
    const after = await blobFiles();
    const gone = removed(before, after);
    expect(gone.gone).toEqual(hexes(beta));
    expect(result.stdout).toBe(
      [
        'Deleted Images:',
        `untagged: beta@${beta.digest}`,
        `deleted: ${beta.configBlob.digest}`,
        '',
        `Total reclaimed space: ${humanSize(gone.bytes)}`,
        '',
      ].join('\n'),
    );
    expect(await repoTags('multi:1')).toEqual(['beta:1', 'multi:1']);
    const again = await run('image', 'prune', '-f');
    expect(again.stdout).toBe('Total reclaimed space: 0B\n');
  });

  it('a pinned image cannot be removed without -f, and prune -a keeps it', async () => {
    // Another image for prune -a to take.
    expect((await run('pull', 'gamma:1')).code).toBe(0);
    const pin = await api('/cache/pins/beta:1?note=release%2042', { method: 'PUT' });
    expect(pin.status).toBe(201);
    expect(await pin.json()).toMatchObject({
      Name: 'docker.io/library/beta:1',
      Id: amd64.configBlob.digest,
      Manifest: amd64.digest,
      Note: 'release 42',
      Expires: null,
    });

    // One of two tags: untagging is fine, the pin holds the image, not the name.
    const untag = await run('rmi', 'beta:1');
    expect(untag).toEqual({ code: 0, stdout: 'Untagged: beta:1\n', stderr: '' });
    const byTag = await run('rmi', 'multi:1');
    expect(byTag.code).toBe(1);
    expect(byTag.stderr.trim()).toBe(
      `Error response from daemon: conflict: unable to remove repository reference "multi:1" (must force) - image ${short(amd64)} is pinned by beta:1 (release 42)`,
    );
    const byId = await run('rmi', short(amd64));
    expect(byId.code).toBe(1);
    expect(byId.stderr.trim()).toBe(
      `Error response from daemon: conflict: unable to delete ${short(amd64)} (must be forced) - image is pinned by beta:1 (release 42)`,
    );

    const before = await blobFiles();
    const prune = await run('image', 'prune', '-a', '-f');
    expect(prune.stderr).toBe('');
    const gone = removed(before, await blobFiles());
    expect(gone.gone).toEqual(hexes(gamma));
    expect(prune.stdout).toBe(
      [
        'Deleted Images:',
        'untagged: gamma:1',
        `untagged: gamma@${gamma.digest}`,
        `deleted: ${gamma.configBlob.digest}`,
        '',
        `Total reclaimed space: ${humanSize(gone.bytes)}`,
        '',
      ].join('\n'),
    );
    expect(await repoTags('multi:1')).toEqual(['multi:1']);
  });

  it('docker rmi -f removes a pinned image, its pin, its index record and its blobs', async () => {
    const before = await blobFiles();
    const result = await run('rmi', '-f', 'multi:1');
    expect(result.stderr).toBe('');
    expect(result.stdout).toBe(
      [
        'Untagged: multi:1',
        `Untagged: multi@${multi.digest}`,
        `Deleted: ${amd64.configBlob.digest}`,
        '',
      ].join('\n'),
    );
    expect(removed(before, await blobFiles()).gone).toEqual(hexes(amd64));
    expect(await (await api('/cache/pins')).json()).toEqual([]);
    // Nothing is left: no manifest (the index record went with its last name), no blob file.
    expect(await catalogManifests()).toEqual([]);
    expect([...(await blobFiles()).keys()]).toEqual([]);
    const ls = await run('image', 'ls', '-q');
    expect(ls.stdout).toBe('');
  });

  it('docker rmi of an unknown image is a 404 with Docker words', async () => {
    const result = await run('rmi', 'never:1');
    expect(result.code).toBe(1);
    expect(result.stderr.trim()).toBe('Error response from daemon: No such image: never:1');
  });
});

/** The project's own CLI verbs against the same kind of server: docker's output, our API. */
describe.each(CACHE_BACKENDS)('image-cache CLI: tag, rmi, prune, pin, gc (%s)', (backend) => {
  let registry: RegistryServer;
  let cache: CacheServer;
  let one: GeneratedImage;
  let two: GeneratedImage;

  const cli = (args: string[], input = '') =>
    new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      const child = execFile(
        process.execPath,
        [BIN, ...args],
        { env: { ...process.env, IMAGE_CACHE_URL: cache.url } },
        (error, stdout, stderr) => {
          const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
          resolve({ code, stdout, stderr });
        },
      );
      child.stdin?.end(input);
    });

  beforeAll(async () => {
    registry = await startRegistry();
    one = await generateImage({ seed: 'cli-one', format: 'docker', layers: 1 });
    two = await generateImage({ seed: 'cli-two', format: 'oci', layers: 1 });
    await pushImage({ url: registry.url, repository: 'library/one' }, one, { tags: ['1'] });
    await pushImage({ url: registry.url, repository: 'library/two' }, two, { tags: ['1'] });
    cache = await startCacheServer({
      registries: `docker.io=${registry.url}`,
      flags: ['--gc-interval', '0'],
      backend,
    });
    for (const name of ['one:1', 'two:1']) {
      expect((await docker(cache.hostPort, ['pull', name])).code).toBe(0);
    }
  });

  afterAll(async () => {
    await cache?.close();
    await registry?.stop();
  });

  it('tag, then rmi prints Untagged/Deleted lines like docker', async () => {
    expect(await cli(['tag', 'one:1', 'copy/one:2'])).toEqual({ code: 0, stdout: '', stderr: '' });
    expect((await cli(['rmi', 'copy/one:2'])).stdout).toBe('Untagged: copy/one:2\n');
    const missing = await cli(['rm', 'never:1']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toBe('Error response from daemon: No such image: never:1\n');
    expect((await cli(['rm', '-f', 'never:1'])).code).toBe(0);
  });

  it('pin, pins and unpin; a pinned image stays through prune -a', async () => {
    const pinned = await cli(['pin', 'one:1', '--note', 'keep me', '--expires', '24h']);
    expect(pinned.stdout).toMatch(
      /^Pinned: docker\.io\/library\/one:1 \(sha256:[a-f0-9]{64}\) until /,
    );
    const list = await cli(['pins']);
    expect(list.stdout.split('\n')[0]).toMatch(/^NAME\s+IMAGE ID\s+NOTE\s+CREATED\s+EXPIRES$/);
    expect(list.stdout).toContain(digestHex(one.configBlob.digest).slice(0, 12));

    // Without -f the prompt decides; "n" changes nothing and prints nothing more.
    const declined = await cli(['prune', '-a'], 'n\n');
    expect(declined).toEqual({
      code: 0,
      stdout:
        'WARNING! This will remove all images that are not pinned.\nAre you sure you want to continue? [y/N] ',
      stderr: '',
    });
    const pruned = await cli(['prune', '-a'], 'y\n');
    expect(pruned.stdout).toContain(`deleted: ${two.configBlob.digest}\n`);
    expect(pruned.stdout).not.toContain(one.configBlob.digest);
    expect(pruned.stdout).toMatch(/\nTotal reclaimed space: \d+(\.\d+)?k?B\n$/);

    expect((await cli(['unpin', 'one:1'])).stdout).toBe('Unpinned: one:1\n');
    expect((await cli(['pins'])).stdout).toBe('NAME      IMAGE ID   NOTE      CREATED   EXPIRES\n');
  });

  it('gc prints its report; --dry-run deletes nothing', async () => {
    await cli(['rmi', '--no-prune', 'one:1']);
    const dry = await cli(['gc', '--dry-run', '--grace', '0s']);
    expect(dry.stdout).toMatch(/^Examined: \d+ blobs?, .*\nKept: .*\nWould delete: 2 blobs, /);
    const real = await cli(['gc', '--grace', '0s', '--format', 'json']);
    const report = JSON.parse(real.stdout);
    expect(report.deleted.blobs).toBe(one.blobs.length);
    expect(report.deleted.bytes).toBe(one.blobs.reduce((sum, b) => sum + b.size, 0));
  });
});
