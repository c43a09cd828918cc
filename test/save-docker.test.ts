/**
 * The real engine as judge of the server's `docker save`: every tarball is loaded into a
 * private dockerd (Debian docker.io, 20.10) and the engine must report the image IDs (config
 * digests), tags and layers of the generated images. skopeo reads the same tarballs as
 * `docker-archive:`, and the docker CLI pointed at the server saves through it. Runs over both
 * backends: the embedded default and the AWS one on DynamoDB Local and fauxqs.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { digestHex, shortId } from '../lib/digest.ts';
import { stopAwsEmulators } from './support/aws-emulators.ts';
import { CACHE_BACKENDS } from './support/cache-server.ts';
import { docker } from './support/docker-cli.ts';
import { type Dockerd, dockerdSkipReason, startDockerd } from './support/dockerd.ts';
import type { GeneratedImage } from './support/image-factory.ts';
import {
  fetchSave,
  type SaveFixture,
  savePath,
  startSaveFixture,
} from './support/save-fixtures.ts';
import { skipWhen } from './support/skips.ts';
import { type TempDir, tempDirs } from './support/tmp.ts';

const execFileP = promisify(execFile);
const skip = dockerdSkipReason();
const temps = tempDirs('save-docker');

interface EngineImage {
  Id: string;
  RepoTags: string[];
  Architecture: string;
  RootFS: { Layers: string[] };
}

afterAll(stopAwsEmulators);

describe.each(CACHE_BACKENDS)(
  `server save on the %s backend loaded by a real dockerd${skip ? ` (skipped: ${skip})` : ''}`,
  skipWhen(skip),
  (backend) => {
    let fx: SaveFixture;
    let engine: Dockerd;
    let dir: TempDir;

    beforeAll(async () => {
      [fx, engine] = await Promise.all([startSaveFixture({ backend }), startDockerd()]);
      dir = await temps.create();
    }, 180_000);

    afterAll(async () => {
      await engine?.stop();
      await fx?.close();
      await temps.cleanupAll();
    });

    beforeEach(async () => {
      // Each test judges its own load: start from an empty engine.
      const listed = await engine.api('GET', '/images/json?all=1');
      for (const image of JSON.parse(listed.body) as { Id: string }[]) {
        await engine.api('DELETE', `/images/${image.Id}?force=1`);
      }
    });

    async function saveToFile(names: string[], file: string): Promise<string> {
      const response = await fetchSave(fx.cache.url, savePath(names));
      expect(response.status, response.body.toString().slice(0, 300)).toBe(200);
      const path = dir.file(file);
      await writeFile(path, response.body);
      return path;
    }

    async function load(path: string): Promise<string> {
      const result = await engine.docker(['load', '-i', path]);
      expect(result.stderr, engine.output().slice(-2000)).toBe('');
      expect(result.code).toBe(0);
      return result.stdout;
    }

    async function inspect(name: string): Promise<EngineImage> {
      const result = await engine.docker(['image', 'inspect', name]);
      expect(result.code, result.stderr).toBe(0);
      return (JSON.parse(result.stdout) as EngineImage[])[0]!;
    }

    function expectImage(found: EngineImage, image: GeneratedImage, tags: string[]) {
      expect(found.Id).toBe(image.configBlob.digest);
      expect([...found.RepoTags].sort()).toEqual(tags);
      expect(found.RootFS.Layers).toEqual(image.layers.map((l) => l.diffId));
    }

    it(`runs the expected engine (dockerd 20.10, classic save layout)`, () => {
      expect(engine.version).toMatch(/^20\.10\./);
    });

    it('loads a single image with its ID and tag', async () => {
      const path = await saveToFile(['app:1'], 'single.tar');
      expect(await load(path)).toBe('Loaded image: app:1\n');
      expectImage(await inspect('app:1'), fx.app, ['app:1']);
    });

    it('loads several images sharing a base layer, one with uncompressed and empty layers', async () => {
      const names = ['app:1', 'team/tool:2', 'localhost:5000/plain/img:3'];
      const path = await saveToFile(names, 'multi.tar');
      const output = await load(path);
      for (const name of names) expect(output).toContain(`Loaded image: ${name}\n`);
      expectImage(await inspect('app:1'), fx.app, ['app:1']);
      expectImage(await inspect('team/tool:2'), fx.tool, ['team/tool:2']);
      expectImage(await inspect('localhost:5000/plain/img:3'), fx.plain, [
        'localhost:5000/plain/img:3',
      ]);
    });

    it('loads a multi-arch tag as the platform image the cache resolved', async () => {
      const path = await saveToFile(['multi:1'], 'multiarch.tar');
      expect(await load(path)).toBe('Loaded image: multi:1\n');
      const found = await inspect('multi:1');
      expectImage(found, fx.multiAmd64, ['multi:1']);
      expect(found.Architecture).toBe('amd64');
    });

    it('loads an image saved by ID with all its tags', async () => {
      const path = await saveToFile([shortId(fx.app.configBlob.digest)], 'by-id.tar');
      const output = await load(path);
      expect(output).toContain('Loaded image: app:1\n');
      expect(output).toContain('Loaded image: app:latest\n');
      expectImage(await inspect('app:latest'), fx.app, ['app:1', 'app:latest']);
    });

    it('loads an image saved by digest as an untagged image ID', async () => {
      const path = await saveToFile([`team/tool@${fx.tool.digest}`], 'by-digest.tar');
      expect(await load(path)).toBe(`Loaded image ID: ${fx.tool.configBlob.digest}\n`);
      expectImage(await inspect(fx.tool.configBlob.digest), fx.tool, []);
    });

    it('is readable by skopeo as docker-archive, layers decompressed to their diff_ids', async () => {
      const path = await saveToFile(['app:1', 'team/tool:2'], 'skopeo.tar');
      for (const [name, image] of [
        ['app:1', fx.app],
        ['team/tool:2', fx.tool],
      ] as const) {
        const inspected = await execFileP('skopeo', ['inspect', `docker-archive:${path}:${name}`]);
        const info = JSON.parse(inspected.stdout) as { Layers: string[]; Architecture: string };
        expect(info.Layers).toEqual(image.layers.map((l) => l.diffId));

        const out = dir.file(`skopeo-dir-${image.configBlob.digest.slice(7, 19)}`);
        await execFileP('skopeo', ['copy', `docker-archive:${path}:${name}`, `dir:${out}`]);
        const files = await readdir(out);
        const config = await readFile(`${out}/${digestHex(image.configBlob.digest)}`);
        expect(config.equals(image.configBlob.bytes)).toBe(true);
        for (const layer of image.layers) {
          const hex = digestHex(layer.diffId);
          expect(files).toContain(hex);
          const bytes = await readFile(`${out}/${hex}`);
          expect(createHash('sha256').update(bytes).digest('hex')).toBe(hex);
        }
      }
    });

    it('serves `docker save` from the docker CLI pointed at the server', async () => {
      const path = dir.file('docker-cli.tar');
      const saved = await docker(fx.cache.hostPort, ['save', '-o', path, 'app:1', 'multi:1']);
      expect(saved.stderr).toBe('');
      expect(saved.code).toBe(0);
      const expected = await fetchSave(fx.cache.url, savePath(['app:1', 'multi:1']));
      expect((await readFile(path)).equals(expected.body)).toBe(true);
      const output = await load(path);
      expect(output).toContain('Loaded image: app:1\n');
      expect(output).toContain('Loaded image: multi:1\n');
      expectImage(await inspect('multi:1'), fx.multiAmd64, ['multi:1']);
    });
  },
);
