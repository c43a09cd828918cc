/**
 * `GET /images/get?pull=missing` behind a front door with a deadline (the Lambda adapters set
 * `request.deadline`): a pull that does not fit runs as a job and the save answers 202 naming
 * it, as a redirect save's export does; the same save once the job ended streams the tarball,
 * and `image-cache save --pull` follows the job and asks again by itself.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type Composition, composeEmbedded } from '../lib/composition.ts';
import { parseServeArgs } from '../lib/config.ts';
import { HANDOVER_MARGIN_MS } from '../lib/engine/job-deadline.ts';
import { createRouter, type Router } from '../lib/engine/router.ts';
import { runCliAgainst } from './support/cli-capture.ts';
import { startDeadlineDoor } from './support/deadline-door.ts';
import type { FakeRegistry } from './support/fake-registry.ts';
import { type GeneratedImage, generateImage } from './support/image-factory.ts';
import { readTar } from './support/save-fixtures.ts';
import { Harness, readAll } from './support/upstream-harness.ts';

const REPO = 'library/slow';
const NAME = `docker.io/${REPO}:1`;

async function savedConfig(tarball: Buffer): Promise<string> {
  const manifest = (await readTar(tarball)).find((m) => m.name === 'manifest.json')!;
  const [entry] = JSON.parse(manifest.data.toString()) as Array<{ Config: string }>;
  return `sha256:${entry!.Config.replace(/^blobs\/sha256\/|\.json$/g, '')}`;
}

describe('save with pull=missing behind a front door with a deadline', () => {
  const harness = new Harness();
  let registry: FakeRegistry;
  let dataDir: string;
  let cache: Composition;
  let router: Router;
  let image: GeneratedImage;

  beforeEach(async () => {
    registry = await harness.registry();
    dataDir = await mkdtemp(join(tmpdir(), 'save-pull-jobs-'));
    const config = parseServeArgs(['--data', dataDir, '--gc-interval', '0'], {
      IMAGE_CACHE_REGISTRIES: `docker.io=${registry.url.origin}`,
    });
    const upstream = harness.upstream(registry, { registries: config.registries });
    cache = composeEmbedded(config, { upstream });
    router = createRouter(cache.context);
    image = await generateImage({ seed: 'save-pull-jobs', layers: [{ files: [96 * 1024] }] });
    for (const blob of image.blobs) registry.addBlob(blob.bytes!);
    registry.addManifest(REPO, '1', image.bytes, image.mediaType);
    // Slow enough that the pull outlasts a short deadline.
    registry.inject(registry.blobPath(REPO, image.layers[0]!.digest), {
      kind: 'slow',
      chunkBytes: 8 * 1024,
      delayMs: 200,
    });
  });

  afterEach(async () => {
    await cache.close();
    await harness.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  const save = (followMs: number) =>
    router({
      method: 'GET',
      path: '/v1.47/images/get',
      query: new URLSearchParams({ names: NAME, pull: 'missing' }),
      headers: {},
      deadline: Date.now() + HANDOVER_MARGIN_MS + followMs,
    });

  it('answers 202 naming the pull job, and the same save streams the tarball once it ended', async () => {
    const first = await save(300);
    expect(first.status).toBe(202);
    const job = JSON.parse(String(first.body));
    expect(job).toMatchObject({ kind: 'pull', request: { reference: NAME } });
    expect(first.headers?.Location).toBe(`/cache/jobs/${job.id}`);
    expect(first.headers?.['Retry-After']).toBe('5');

    const waited = await router({
      method: 'GET',
      path: `/cache/jobs/${job.id}`,
      query: new URLSearchParams({ wait: '30' }),
      headers: {},
    });
    expect(JSON.parse(String(waited.body)).status).toBe('succeeded');

    const second = await save(0);
    expect(second.status).toBe(200);
    const tarball = await readAll(second.body as Readable);
    expect(await savedConfig(tarball)).toBe(image.configBlob.digest);
    expect(registry.count(registry.blobPath(REPO, image.layers[0]!.digest), 'GET')).toBe(1);
  });

  it('image-cache save --pull follows the handed-over pull and saves', async () => {
    const door = await startDeadlineDoor(router, { followMs: 300 });
    const file = join(dataDir, 'saved.tar');
    try {
      const { code, stderr } = await runCliAgainst(door.url, ['save', '--pull', '-o', file, NAME]);
      expect(stderr).not.toMatch(/Error/);
      expect(code).toBe(0);
      expect(door.requests.filter((r) => r.startsWith('GET /cache/jobs/'))).not.toEqual([]);
      expect(door.requests.filter((r) => r === 'GET /images/get')).toHaveLength(2);
    } finally {
      await door.close();
    }
    expect(await savedConfig(await readFile(file))).toBe(image.configBlob.digest);
  });
});
