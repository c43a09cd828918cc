import { execFile } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sha256 } from '../lib/digest.ts';
import { MediaType } from '../lib/media-types.ts';
import {
  type GeneratedImage,
  type GeneratedIndex,
  generateImage,
  generateIndex,
} from './support/image-factory.ts';
import { pushImage, pushIndex } from './support/push.ts';
import { type RegistryServer, startRegistry } from './support/registry-server.ts';
import { tempDirs } from './support/tmp.ts';

const run = promisify(execFile);

async function skopeo(...args: string[]): Promise<string> {
  const { stdout } = await run('skopeo', args, { maxBuffer: 64 * 1024 * 1024 });
  return stdout;
}

/** The exact bytes the registry serves, as skopeo reads them. */
async function rawManifest(ref: string): Promise<string> {
  return skopeo('inspect', '--raw', '--tls-verify=false', `docker://${ref}`);
}

describe('test support: generated images pushed to the real distribution registry', () => {
  let registry: RegistryServer;
  let multi: GeneratedIndex;
  let single: GeneratedImage;
  const temps = tempDirs('interop');

  beforeAll(async () => {
    registry = await startRegistry();
    multi = await generateIndex({
      seed: 'interop-multi',
      format: 'oci',
      platforms: ['linux/amd64', 'linux/arm64/v8'],
      layers: [{}, { empty: true }, { compression: 'none' }],
    });
    single = await generateImage({ seed: 'interop-single', format: 'docker', layers: 2 });
  });

  afterAll(async () => {
    await registry?.stop();
    await temps.cleanupAll();
  });

  it('serves a pushed OCI index and its platform manifests byte for byte', async () => {
    const target = { url: registry.url, repository: 'it/multi' };
    const pushed = await pushIndex(target, multi, { tags: ['v1'] });
    expect(pushed.manifests.at(-1)).toBe(multi.digest);

    const raw = await rawManifest(`${registry.host}/it/multi:v1`);
    expect(raw).toBe(multi.bytes.toString());
    expect(JSON.parse(raw).mediaType).toBe(MediaType.ociIndex);
    for (const image of multi.images) {
      const child = await rawManifest(`${registry.host}/it/multi@${image.digest}`);
      expect(sha256(child)).toBe(image.digest);
    }

    const arm = JSON.parse(
      await skopeo(
        'inspect',
        '--tls-verify=false',
        '--override-os=linux',
        '--override-arch=arm64',
        '--override-variant=v8',
        `docker://${registry.host}/it/multi:v1`,
      ),
    );
    const armImage = multi.images.find((image) => image.platform.architecture === 'arm64')!;
    expect(arm.Digest).toBe(multi.digest);
    expect(arm.Architecture).toBe('arm64');
    expect(arm.Layers).toEqual(armImage.layers.map((layer) => layer.digest));
  });

  it('serves a schema2 image under a nested repository and its blobs verify', async () => {
    const target = { url: registry.url, repository: 'team/sub/app' };
    const first = await pushImage(target, single, { tags: ['1.0', 'latest'] });
    expect(first.uploaded).toHaveLength(single.blobs.length);
    const again = await pushImage(target, single, { tags: ['1.0'] });
    expect(again.uploaded).toEqual([]);
    expect(again.skipped).toHaveLength(single.blobs.length);

    const ref = `${registry.host}/team/sub/app:1.0`;
    expect(await rawManifest(ref)).toBe(single.bytes.toString());
    const config = await skopeo(
      'inspect',
      '--config',
      '--raw',
      '--tls-verify=false',
      `docker://${ref}`,
    );
    expect(config).toBe(single.configBlob.bytes.toString());

    // skopeo copy checks every blob against its digest while it downloads.
    const out = await temps.create();
    await skopeo('copy', '--src-tls-verify=false', `docker://${ref}`, `dir:${out.path}`);
    const files = await readdir(out.path);
    for (const layer of single.layers) {
      const hex = layer.digest.slice('sha256:'.length);
      expect(files).toContain(hex);
      expect(sha256(await readFile(out.file(hex)))).toBe(layer.digest);
    }
  });

  it('regenerates the same bytes from the same seed', async () => {
    const again = await generateIndex({
      seed: 'interop-multi',
      format: 'oci',
      platforms: ['linux/amd64', 'linux/arm64/v8'],
      layers: [{}, { empty: true }, { compression: 'none' }],
    });
    expect(again.digest).toBe(multi.digest);
    const other = await generateImage({ seed: 'interop-single-2', format: 'docker', layers: 2 });
    expect(other.digest).not.toBe(single.digest);
    // Streaming layers to disk must not change a single byte.
    const dir = await temps.create();
    const onDisk = await generateImage({
      seed: 'interop-single',
      format: 'docker',
      layers: 2,
      dir: dir.path,
    });
    expect(onDisk.digest).toBe(single.digest);
    expect(onDisk.layers.every((layer) => layer.path && !layer.bytes)).toBe(true);
  });
});
