/**
 * Real tools as judges of load: a private dockerd (Debian docker.io 20.10, whose `docker save`
 * writes the classic layout) saves images that the server must load with the same IDs, tags and
 * layers; skopeo's `docker-archive:` output loads too; and the real docker CLI pointed at the
 * server (`DOCKER_HOST=tcp://...`) runs `docker load` against it. Runs over both backends: the
 * embedded default and the AWS one on DynamoDB Local and fauxqs.
 */
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { digestHex } from '../lib/digest.ts';
import { MediaType } from '../lib/media-types.ts';
import { stopAwsEmulators } from './support/aws-emulators.ts';
import { CACHE_BACKENDS, type CacheServer, startCacheServer } from './support/cache-server.ts';
import { docker as dockerCli } from './support/docker-cli.ts';
import { type Dockerd, dockerdSkipReason, startDockerd } from './support/dockerd.ts';
import { type GeneratedImage, generateImage } from './support/image-factory.ts';
import { skipWhen } from './support/skips.ts';
import { docker25Members, listImages, postLoad, tarBuffer } from './support/tarballs.ts';
import { type TempDir, tempDir } from './support/tmp.ts';

const execFileP = promisify(execFile);
const skip = dockerdSkipReason();

interface EngineImage {
  Id: string;
  RepoTags: string[];
  RootFS: { Layers: string[] };
}

afterAll(stopAwsEmulators);

describe.each(CACHE_BACKENDS)(
  `load on the %s backend judged by dockerd, skopeo and the docker CLI${skip ? ` (skipped: ${skip})` : ''}`,
  skipWhen(skip),
  (backend) => {
    let engine: Dockerd;
    let server: CacheServer;
    let dir: TempDir;
    let base: GeneratedImage;
    let app: GeneratedImage; // shares base's first layer
    let gzipped: GeneratedImage;

    beforeAll(async () => {
      [engine, server, dir] = await Promise.all([
        startDockerd(),
        startCacheServer({ registries: '', backend }),
        tempDir('load-docker'),
      ]);
      base = await generateImage({
        seed: 'docker-load-base',
        layers: [{ compression: 'none' }, { compression: 'none', symlink: true }],
      });
      app = await generateImage({
        seed: 'docker-load-app',
        baseLayers: [base.layers[0]!],
        layers: [{ compression: 'none' }, { empty: true, compression: 'none' }],
      });
      gzipped = await generateImage({ seed: 'docker-load-gz', format: 'docker', layers: 2 });
      // Seed the engine through its own `docker load` of tars this suite builds.
      for (const [image, tag] of [
        [base, 'judge/base:1'],
        [app, 'judge/app:2'],
        [gzipped, 'judge/gz:3'],
      ] as const) {
        const path = dir.file(`${digestHex(image.digest)}.tar`);
        await writeFile(path, await tarBuffer(docker25Members([{ image, tags: [tag] }])));
        const loaded = await engine.docker(['load', '-i', path]);
        expect(loaded.code, loaded.stderr + engine.output().slice(-2000)).toBe(0);
      }
    }, 180_000);

    afterAll(async () => {
      await engine?.stop();
      await server?.close();
      await dir?.cleanup();
    });

    async function engineInspect(name: string): Promise<EngineImage> {
      const result = await engine.docker(['image', 'inspect', name]);
      expect(result.code, result.stderr).toBe(0);
      return (JSON.parse(result.stdout) as EngineImage[])[0]!;
    }

    async function cacheInspect(name: string) {
      const response = await fetch(`${server.url}/images/${name}/json`);
      expect(response.status).toBe(200);
      return (await response.json()) as EngineImage & { Size: number };
    }

    async function engineSave(names: string[], file: string): Promise<Buffer> {
      const path = dir.file(file);
      const saved = await engine.docker(['save', '-o', path, ...names]);
      expect(saved.code, saved.stderr).toBe(0);
      return readFile(path);
    }

    it('loads what `docker save` of one image wrote, with the engine’s ID, tag and layers', async () => {
      const tar = await engineSave(['judge/base:1'], 'base.tar');
      const response = await postLoad(server, tar);
      expect(response.status, response.text).toBe(200);
      expect(response.lines.map((l) => l.stream)).toEqual(['Loaded image: judge/base:1\n']);
      const engineView = await engineInspect('judge/base:1');
      const cacheView = await cacheInspect('judge/base:1');
      expect(cacheView.Id).toBe(engineView.Id);
      expect(cacheView.Id).toBe(base.configBlob.digest);
      expect(cacheView.RepoTags).toEqual(engineView.RepoTags);
      expect(cacheView.RootFS.Layers).toEqual(engineView.RootFS.Layers);
      expect(cacheView.Size).toBe(base.fileBytes);
    });

    it('loads a multi-image `docker save` (shared layer, gzip-origin layers), gzip-compressed', async () => {
      const tar = await engineSave(['judge/base:1', 'judge/app:2', 'judge/gz:3'], 'multi.tar');
      const { gzipSync } = await import('node:zlib');
      const response = await postLoad(server, gzipSync(tar, { level: 1 }));
      expect(response.status, response.text).toBe(200);
      expect(response.lines.map((l) => l.stream).sort()).toEqual([
        'Loaded image: judge/app:2\n',
        'Loaded image: judge/base:1\n',
        'Loaded image: judge/gz:3\n',
      ]);
      for (const [image, tag] of [
        [base, 'judge/base:1'],
        [app, 'judge/app:2'],
        [gzipped, 'judge/gz:3'],
      ] as const) {
        const engineView = await engineInspect(tag);
        const cacheView = await cacheInspect(tag);
        expect(cacheView.Id).toBe(engineView.Id);
        expect(cacheView.RootFS.Layers).toEqual(image.config.rootfs.diff_ids);
        expect(cacheView.Size).toBe(image.fileBytes);
      }
    });

    it('saves what it loaded so that the engine loads it back with the same ID', async () => {
      const tar = await engineSave(['judge/app:2'], 'app.tar');
      expect((await postLoad(server, tar)).status).toBe(200);
      const saved = await fetch(`${server.url}/images/judge/app:2/get`);
      expect(saved.status).toBe(200);
      const path = dir.file('roundtrip.tar');
      await writeFile(path, Buffer.from(await saved.arrayBuffer()));
      await engine.docker(['rmi', '-f', 'judge/app:2']);
      const loaded = await engine.docker(['load', '-i', path]);
      expect(loaded.code, loaded.stderr).toBe(0);
      expect(loaded.stdout).toContain('Loaded image: judge/app:2');
      expect((await engineInspect('judge/app:2')).Id).toBe(app.configBlob.digest);
    });

    it('loads skopeo docker-archive output (from an OCI layout with gzip layers)', async () => {
      const layout = dir.file('oci-src');
      await writeOciLayout(layout, gzipped);
      const archive = dir.file('skopeo.tar');
      const policy = ['--insecure-policy'];
      await execFileP('skopeo', [
        ...policy,
        'copy',
        `oci:${layout}`,
        `docker-archive:${archive}:skopeo/gz:9`,
      ]);
      const response = await postLoad(server, await readFile(archive));
      expect(response.status, response.text).toBe(200);
      expect(response.lines.map((l) => l.stream)).toEqual(['Loaded image: skopeo/gz:9\n']);
      const view = await cacheInspect('skopeo/gz:9');
      expect(view.Id).toBe(gzipped.configBlob.digest);
      expect(view.RootFS.Layers).toEqual(gzipped.config.rootfs.diff_ids);
      expect(view.Size).toBe(gzipped.fileBytes);
      // skopeo reads the cache's save of it back as docker-archive.
      const saved = await fetch(`${server.url}/images/skopeo/gz:9/get`);
      const savedPath = dir.file('skopeo-roundtrip.tar');
      await writeFile(savedPath, Buffer.from(await saved.arrayBuffer()));
      const inspected = await execFileP('skopeo', [
        'inspect',
        '--raw',
        `docker-archive:${savedPath}`,
      ]);
      expect(inspected.stdout).toContain(gzipped.configBlob.digest);
    });

    it('answers the real docker CLI: DOCKER_HOST=tcp://cache docker load -i file.tar', async () => {
      const path = dir.file('cli.tar');
      await writeFile(
        path,
        await tarBuffer(docker25Members([{ image: base, tags: ['cli/docker:5'] }])),
      );
      const result = await dockerCli(server.hostPort, ['load', '-i', path]);
      expect(result.stderr).toBe('');
      expect(result.code).toBe(0);
      expect(result.stdout).toContain('Loaded image: cli/docker:5');
      const listed = await dockerCli(server.hostPort, [
        'image',
        'ls',
        '--format',
        '{{.Repository}}:{{.Tag}} {{.ID}}',
      ]);
      expect(listed.stdout).toContain(
        `cli/docker:5 ${digestHex(base.configBlob.digest).slice(0, 12)}`,
      );
      const row = (await listImages(server)).find((i) => i.Id === base.configBlob.digest);
      expect(row?.RepoTags).toContain('cli/docker:5');
    });

    it('shows the server refusal through the docker CLI', async () => {
      const path = dir.file('hostile.tar');
      await writeFile(path, await tarBuffer([{ name: '/etc/evil', bytes: Buffer.from('x') }]));
      const result = await dockerCli(server.hostPort, ['load', '-i', path]);
      expect(result.code).not.toBe(0);
      expect(result.stderr).toMatch(/absolute path/);
    });
  },
);

async function writeOciLayout(path: string, image: GeneratedImage): Promise<void> {
  const { mkdir } = await import('node:fs/promises');
  const blobs = `${path}/blobs/sha256`;
  await mkdir(blobs, { recursive: true });
  await writeFile(`${blobs}/${digestHex(image.digest)}`, image.bytes);
  await writeFile(`${blobs}/${digestHex(image.configBlob.digest)}`, image.configBlob.bytes);
  for (const layer of image.layers)
    await writeFile(`${blobs}/${digestHex(layer.digest)}`, layer.bytes!);
  await writeFile(`${path}/oci-layout`, JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  await writeFile(
    `${path}/index.json`,
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaType.ociIndex,
      manifests: [{ mediaType: image.mediaType, digest: image.digest, size: image.size }],
    }),
  );
}
