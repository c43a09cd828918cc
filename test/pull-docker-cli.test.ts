import { afterAll, beforeAll, describe, expect, it } from 'vitest';
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
import { type RecordingProxy, startRecordingProxy } from './support/recording-proxy.ts';
import { type RegistryServer, startRegistry } from './support/registry-server.ts';

/**
 * The judge is the real docker CLI (client only) talking to our server through DOCKER_HOST,
 * with the real CNCF registry standing in for Docker Hub. Every expected value comes from the
 * generated images themselves (configs, diff_ids, file sizes). Runs over both backends: the
 * embedded default and the AWS one on DynamoDB Local and fauxqs.
 */
afterAll(stopAwsEmulators);

describe.each(CACHE_BACKENDS)('docker CLI against the cache (%s backend)', (backend) => {
  let registry: RegistryServer;
  let cache: CacheServer;
  /** Between the cache and the registry: what the cache asked upstream. */
  let upstream: RecordingProxy;
  let multi: GeneratedIndex;
  let nested: GeneratedImage;
  let withEmptyLayers: GeneratedImage;

  beforeAll(async () => {
    registry = await startRegistry();
    multi = await generateIndex({
      seed: 'multi',
      format: 'oci',
      platforms: ['linux/amd64', 'linux/arm64/v8'],
      layers: 2,
    });
    nested = await generateImage({ seed: 'nested', format: 'docker', layers: 3 });
    withEmptyLayers = await generateImage({
      seed: 'empty',
      format: 'docker',
      layers: [{ empty: true }, { files: [5000] }, { empty: true }],
    });
    await pushIndex({ url: registry.url, repository: 'library/multi' }, multi, { tags: ['1'] });
    await pushImage({ url: registry.url, repository: 'team/sub/app' }, nested, { tags: ['2.0'] });
    await pushImage({ url: registry.url, repository: 'library/empties' }, withEmptyLayers, {
      tags: ['latest'],
    });
    upstream = await startRecordingProxy(registry.url);
    cache = await startCacheServer({ registries: `docker.io=${upstream.url}`, backend });
  });

  afterAll(async () => {
    await cache?.close();
    await upstream?.close();
    await registry?.stop();
  });

  it('pulls a multi-arch OCI index for the default platform, with Docker progress lines', async () => {
    const result = await docker(cache.hostPort, ['pull', 'multi:1']);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const amd64 = multi.images.find((i) => i.platform.architecture === 'amd64')!;
    expect(result.stdout).toContain('1: Pulling from library/multi');
    for (const layer of amd64.layers) {
      expect(result.stdout).toContain(`${digestHex(layer.digest).slice(0, 12)}: Pull complete`);
    }
    expect(result.stdout).toContain(`Digest: ${multi.digest}`);
    expect(result.stdout).toContain('Status: Downloaded newer image for multi:1');
    expect(result.stdout.trim().split('\n').at(-1)).toBe('docker.io/library/multi:1');
    const stored = await cache.blobFiles();
    for (const blob of amd64.blobs) expect(stored.get(digestHex(blob.digest))).toBe(blob.size);
  });

  it('says the image is up to date on a second pull', async () => {
    const result = await docker(cache.hostPort, ['pull', 'multi:1']);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('Status: Image is up to date for multi:1');
  });

  it('inspects with the ID, tags, digests, platform and layers of the image config', async () => {
    const amd64 = multi.images.find((i) => i.platform.architecture === 'amd64')!;
    const result = await docker(cache.hostPort, ['image', 'inspect', 'multi:1']);
    expect(result.code).toBe(0);
    const [inspect] = JSON.parse(result.stdout);
    expect(inspect.Id).toBe(amd64.configBlob.digest);
    expect(inspect.RepoTags).toEqual(['multi:1']);
    expect(inspect.RepoDigests).toEqual([`multi@${multi.digest}`]);
    expect(inspect.Architecture).toBe('amd64');
    expect(inspect.Os).toBe('linux');
    expect(inspect.Size).toBe(amd64.fileBytes);
    expect(inspect.RootFS.Layers).toEqual(amd64.config.rootfs.diff_ids);
    expect(inspect.Config.Cmd).toEqual(amd64.config.config.Cmd);
    expect(inspect.Created).toBe(amd64.config.created);
  });

  it('pulls another platform of the same tag and re-points the tag, without fetching the index again', async () => {
    const arm64 = multi.images.find((i) => i.platform.architecture === 'arm64')!;
    upstream.clear();
    const result = await docker(cache.hostPort, ['pull', '--platform', 'linux/arm64', 'multi:1']);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const inspect = JSON.parse(
      (await docker(cache.hostPort, ['image', 'inspect', 'multi:1'])).stdout,
    )[0];
    expect(inspect.Id).toBe(arm64.configBlob.digest);
    expect(inspect.Architecture).toBe('arm64');
    expect(inspect.Variant).toBe('v8');
    // The index stored by the first pull picks the arm64 manifest: neither the tag nor the index
    // is asked for again, only the arm64 manifest by digest.
    const manifests = upstream.exchanges
      .filter((e) => e.path.includes('/manifests/'))
      .map((e) => `${e.method} ${e.path}`);
    expect(manifests).toEqual([`GET /v2/library/multi/manifests/${arm64.digest}`]);
  });

  it('pulls a schema2 image with a nested repository name and shows it in docker image ls', async () => {
    const pull = await docker(cache.hostPort, ['pull', 'team/sub/app:2.0']);
    expect(pull.code).toBe(0);
    const ls = await docker(cache.hostPort, ['image', 'ls', '--format', 'json']);
    expect(ls.code).toBe(0);
    const rows = ls.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    const row = rows.find((r) => r.Repository === 'team/sub/app');
    expect(row).toMatchObject({ Tag: '2.0', ID: digestHex(nested.configBlob.digest).slice(0, 12) });
    const table = await docker(cache.hostPort, ['image', 'ls']);
    expect(table.stdout.split('\n')[0]).toMatch(/^REPOSITORY\s+TAG\s+IMAGE ID\s+CREATED\s+SIZE$/);
    expect(table.stdout).toMatch(
      new RegExp(`team/sub/app\\s+2\\.0\\s+${digestHex(nested.configBlob.digest).slice(0, 12)}`),
    );
  });

  it('shows the history of an image with empty layers, sizes counted from the files', async () => {
    expect((await docker(cache.hostPort, ['pull', 'empties'])).code).toBe(0);
    const result = await docker(cache.hostPort, [
      'image',
      'history',
      '--no-trunc',
      '--format',
      'json',
      'empties',
    ]);
    expect(result.code).toBe(0);
    const rows = result.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    const history = withEmptyLayers.config.history;
    expect(rows).toHaveLength(history.length);
    expect(rows[0].ID).toBe(withEmptyLayers.configBlob.digest);
    expect(rows.slice(1).every((r: { ID: string }) => r.ID === '<missing>')).toBe(true);
    expect(rows.map((r: { CreatedBy: string }) => r.CreatedBy)).toEqual(
      [...history].reverse().map((h) => h.created_by),
    );
    const inspect = JSON.parse(
      (await docker(cache.hostPort, ['image', 'inspect', 'empties'])).stdout,
    )[0];
    expect(inspect.Size).toBe(withEmptyLayers.fileBytes);
  });

  it('resolves images by short ID, full ID and repo@digest', async () => {
    const id = nested.configBlob.digest;
    for (const name of [digestHex(id).slice(0, 12), id, `team/sub/app@${nested.digest}`]) {
      const result = await docker(cache.hostPort, [
        'image',
        'inspect',
        '--format',
        '{{.Id}}',
        name,
      ]);
      expect(result.stderr).toBe('');
      expect(result.stdout.trim()).toBe(id);
    }
  });

  it('reports an unknown tag as not found and stores nothing', async () => {
    const result = await docker(cache.hostPort, ['pull', 'multi:nope']);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(/not found/);
    const ls = await docker(cache.hostPort, [
      'image',
      'ls',
      '--format',
      '{{.Repository}}:{{.Tag}}',
    ]);
    expect(ls.stdout).not.toContain('multi:nope');
  });

  it('refuses a registry that is not allowed without contacting it', async () => {
    const result = await docker(cache.hostPort, ['pull', '127.0.0.1:1/evil/image:1']);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(/not allowed/);
  });

  it('inspecting an unknown image says "No such image"', async () => {
    const result = await docker(cache.hostPort, ['image', 'inspect', 'never-pulled']);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(/No such image: never-pulled/);
  });
});
