import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Digest } from '../lib/digest.ts';
import { type CacheServer, startCacheServer } from './support/cache-server.ts';
import {
  type GeneratedImage,
  type GeneratedIndex,
  generateImage,
  generateIndex,
} from './support/image-factory.ts';
import {
  classicMembers,
  craneMembers,
  docker25Members,
  type LoadResponse,
  listImages,
  ociLayoutMembers,
  postLoad,
  reorder,
  type TarMember,
  tarBuffer,
} from './support/tarballs.ts';
import { tempDir } from './support/tmp.ts';

async function inspect(server: CacheServer, name: string) {
  const response = await fetch(`${server.url}/images/${name}/json`);
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

function loadedLines(response: LoadResponse): string[] {
  return response.lines.map((l) => l.stream ?? '');
}

describe('POST /images/load', () => {
  let server: CacheServer;
  let plain: GeneratedImage; // uncompressed OCI layers, as Docker 25+ saves them
  let gz: GeneratedImage; // gzip layers, docker schema 2
  let other: GeneratedImage;
  let shared: GeneratedImage; // shares its base layer with `plain`
  let multi: GeneratedIndex;

  beforeAll(async () => {
    server = await startCacheServer({ registries: '' });
    plain = await generateImage({
      seed: 'load-plain',
      layers: [
        { compression: 'none' },
        { compression: 'none', symlink: true },
        { empty: true, compression: 'none' },
      ],
      labels: { team: 'build' },
    });
    gz = await generateImage({ seed: 'load-gzip', format: 'docker', layers: 2 });
    other = await generateImage({ seed: 'load-other', layers: [{ compression: 'none' }] });
    shared = await generateImage({
      seed: 'load-shared',
      baseLayers: [plain.layers[0]!],
      layers: [{ compression: 'none' }],
    });
    multi = await generateIndex({
      seed: 'load-multi',
      layers: [{ compression: 'none' }],
      attestations: true,
    });
  });
  afterAll(async () => {
    await server?.close();
  });

  async function expectListed(image: GeneratedImage, tags: string[], digests?: string[]) {
    const row = (await listImages(server)).find((i) => i.Id === image.configBlob.digest);
    expect(row, `image ${image.configBlob.digest} listed`).toBeDefined();
    expect(row!.RepoTags).toEqual([...tags].sort());
    expect(row!.Size).toBe(image.fileBytes);
    if (digests) expect(row!.RepoDigests).toEqual(expect.arrayContaining(digests));
    for (const tag of tags) {
      const { status, body } = await inspect(server, tag);
      expect(status).toBe(200);
      expect(body.Id).toBe(image.configBlob.digest);
      expect(body.Size).toBe(image.fileBytes);
      expect((body.RootFS as { Layers: Digest[] }).Layers).toEqual(image.config.rootfs.diff_ids);
    }
    return row!;
  }

  const cases: Array<{
    name: string;
    members: () => TarMember[];
    gzip?: boolean;
    tag: string;
    image: () => GeneratedImage;
    repoDigest: boolean;
  }> = [
    {
      name: 'Docker 25+ save (OCI layout + manifest.json)',
      members: () => docker25Members([{ image: plain, tags: ['d25/app:1'] }]),
      tag: 'd25/app:1',
      image: () => plain,
      repoDigest: true,
    },
    {
      name: 'Docker 25+ save with gzip layers and a Docker manifest',
      members: () => docker25Members([{ image: gz, tags: ['d25/gz:1'] }]),
      tag: 'd25/gz:1',
      image: () => gz,
      repoDigest: true,
    },
    {
      name: 'classic save, manifest.json last',
      members: () =>
        reorder(classicMembers([{ image: plain, tags: ['classic/app:1'] }]), 'index-last'),
      tag: 'classic/app:1',
      image: () => plain,
      repoDigest: false,
    },
    {
      name: 'classic save of gzip layers (decompressed as classic saves hold them)',
      members: () => classicMembers([{ image: gz, tags: ['classic/gz:2'] }]),
      tag: 'classic/gz:2',
      image: () => gz,
      repoDigest: false,
    },
    {
      name: 'classic save, manifest.json first',
      members: () =>
        reorder(classicMembers([{ image: other, tags: ['classic/first:1'] }]), 'index-first'),
      tag: 'classic/first:1',
      image: () => other,
      repoDigest: false,
    },
    {
      name: 'Docker 25+ save, entries reversed and gzip-wrapped',
      members: () => reorder(docker25Members([{ image: other, tags: ['gz/other:1'] }]), 'reverse'),
      gzip: true,
      tag: 'gz/other:1',
      image: () => other,
      repoDigest: true,
    },
    {
      name: 'crane tarball (sha256:<hex> config, gzip <hex>.tar.gz layers)',
      members: () => craneMembers([{ image: gz, tags: ['crane/gz:1'] }]),
      tag: 'crane/gz:1',
      image: () => gz,
      repoDigest: false,
    },
    {
      name: 'plain OCI layout with a full ref.name',
      members: () => ociLayoutMembers([{ target: plain, refName: 'oci/app:3' }]),
      tag: 'oci/app:3',
      image: () => plain,
      repoDigest: true,
    },
    {
      name: 'plain OCI layout with io.containerd.image.name, gzip-wrapped',
      members: () =>
        ociLayoutMembers([{ target: gz, imageName: 'ghcr.io/team/gz:7', refName: '7' }]),
      gzip: true,
      tag: 'ghcr.io/team/gz:7',
      image: () => gz,
      repoDigest: true,
    },
  ];

  for (const c of cases) {
    it(`loads ${c.name}`, async () => {
      const body = await tarBuffer(c.members(), { gzip: c.gzip });
      const response = await postLoad(server, body);
      expect(response.status, response.text).toBe(200);
      expect(loadedLines(response)).toEqual([`Loaded image: ${c.tag}\n`]);
      const image = c.image();
      const repo = c.tag.slice(0, c.tag.lastIndexOf(':'));
      const row = await expectListed(
        image,
        (await listImages(server)).find((i) => i.Id === image.configBlob.digest)!.RepoTags,
      );
      expect(row.RepoTags).toContain(c.tag);
      const digests = row.RepoDigests;
      if (c.repoDigest) expect(digests).toContain(`${repo}@${image.digest}`);
      else expect(digests.filter((d) => d.startsWith(`${repo}@`))).toEqual([]);
    });
  }

  it('loads several images with shared layers (classic symlinked layer) in one tar', async () => {
    const body = await tarBuffer(
      classicMembers(
        [
          { image: plain, tags: ['multi/a:1', 'multi/a:latest'] },
          { image: shared, tags: ['multi/b:1'] },
        ],
        { symlinkShared: true },
      ),
    );
    const response = await postLoad(server, body);
    expect(response.status, response.text).toBe(200);
    expect(loadedLines(response)).toEqual([
      'Loaded image: multi/a:1\n',
      'Loaded image: multi/a:latest\n',
      'Loaded image: multi/b:1\n',
    ]);
    await expectListed(shared, ['multi/b:1']);
    const row = (await listImages(server)).find((i) => i.Id === plain.configBlob.digest)!;
    expect(row.RepoTags).toEqual(expect.arrayContaining(['multi/a:1', 'multi/a:latest']));
  });

  it('loads an untagged image and answers with its ID', async () => {
    const untagged = await generateImage({
      seed: 'load-untagged',
      layers: [{ compression: 'none' }],
    });
    const response = await postLoad(
      server,
      await tarBuffer(docker25Members([{ image: untagged, tags: [] }])),
    );
    expect(response.status, response.text).toBe(200);
    expect(loadedLines(response)).toEqual([`Loaded image ID: ${untagged.configBlob.digest}\n`]);
    const row = (await listImages(server)).find((i) => i.Id === untagged.configBlob.digest);
    expect(row?.RepoTags).toEqual([]);
    const { status, body } = await inspect(server, untagged.configBlob.digest);
    expect(status).toBe(200);
    expect(body.Size).toBe(untagged.fileBytes);
  });

  it('loads an OCI layout whose index.json names a multi-arch index: linux/amd64, index kept', async () => {
    const response = await postLoad(
      server,
      await tarBuffer(ociLayoutMembers([{ target: multi, imageName: 'docker.io/multi/arch:1' }])),
    );
    expect(response.status, response.text).toBe(200);
    expect(loadedLines(response)).toEqual(['Loaded image: multi/arch:1\n']);
    const amd64 = multi.images.find((i) => i.platform.architecture === 'amd64')!;
    const row = await expectListed(amd64, ['multi/arch:1']);
    expect(row.RepoDigests).toEqual([`multi/arch@${multi.digest}`]);
  });

  it('loads an OCI layout index holding only the arm64 blobs by picking that platform', async () => {
    const arm = multi.images.find((i) => i.platform.architecture === 'arm64')!;
    const response = await postLoad(
      server,
      await tarBuffer(
        ociLayoutMembers([{ target: multi, imageName: 'docker.io/multi/arm:1', children: [arm] }]),
      ),
    );
    expect(response.status, response.text).toBe(200);
    await expectListed(arm, ['multi/arm:1']);
  });

  it('leaves an OCI layout with a bare ref.name untagged', async () => {
    const image = await generateImage({ seed: 'load-bare', layers: [{ compression: 'none' }] });
    const response = await postLoad(
      server,
      await tarBuffer(ociLayoutMembers([{ target: image, refName: 'latest' }])),
    );
    expect(response.status, response.text).toBe(200);
    expect(loadedLines(response)).toEqual([`Loaded image ID: ${image.configBlob.digest}\n`]);
  });

  it('moves a tag to the newly loaded image and loads the same tar twice idempotently', async () => {
    const body = await tarBuffer(docker25Members([{ image: other, tags: ['move/me:1'] }]));
    expect((await postLoad(server, body)).status).toBe(200);
    const again = await postLoad(server, body);
    expect(again.status, again.text).toBe(200);
    const next = await postLoad(
      server,
      await tarBuffer(docker25Members([{ image: gz, tags: ['move/me:1'] }])),
    );
    expect(next.status).toBe(200);
    expect((await inspect(server, 'move/me:1')).body.Id).toBe(gz.configBlob.digest);
  });

  it('answers on the versioned path too, as the docker CLI calls it', async () => {
    const body = await tarBuffer(docker25Members([{ image: other, tags: ['versioned/x:1'] }]));
    const response = await fetch(`${server.url}/v1.47/images/load?quiet=0`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-tar' },
      body: new Uint8Array(body),
    });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('application/json');
    expect(await response.text()).toContain('Loaded image: versioned/x:1');
  });

  describe('image-cache load (CLI)', () => {
    const BIN = fileURLToPath(new URL('../bin/image-cache.js', import.meta.url));
    const run = (args: string[], stdin?: Buffer) =>
      new Promise<{ code: number; stdout: string; stderr: string }>((resolve, reject) => {
        const child = spawn(process.execPath, [BIN, ...args], {
          env: { PATH: process.env.PATH, IMAGE_CACHE_URL: server.url },
          stdio: ['pipe', 'pipe', 'pipe'],
        });
        let stdout = '';
        let stderr = '';
        child.stdout.on('data', (c) => {
          stdout += c;
        });
        child.stderr.on('data', (c) => {
          stderr += c;
        });
        child.on('error', reject);
        child.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr }));
        child.stdin.end(stdin ?? Buffer.alloc(0));
      });

    it('loads a file given with -i and prints what Docker prints', async () => {
      await using dir = await tempDir('load-cli');
      const file = dir.file('image.tar');
      await writeFile(
        file,
        await tarBuffer(classicMembers([{ image: other, tags: ['cli/file:1'] }])),
      );
      const result = await run(['load', '-i', file]);
      expect(result.stderr).toBe('');
      expect(result.stdout).toBe('Loaded image: cli/file:1\n');
      expect(result.code).toBe(0);
      await expectListed(
        other,
        (await listImages(server)).find((i) => i.Id === other.configBlob.digest)!.RepoTags,
      );
    });

    it('loads a gzip-compressed tar from stdin with -q', async () => {
      const body = await tarBuffer(docker25Members([{ image: gz, tags: ['cli/stdin:1'] }]), {
        gzip: true,
      });
      const result = await run(['load', '-q'], body);
      expect(result.stdout).toBe('Loaded image: cli/stdin:1\n');
      expect(result.code).toBe(0);
    });

    it('prints the server refusal and exits 1', async () => {
      await using dir = await tempDir('load-cli');
      const file = dir.file('bad.tar');
      await writeFile(file, await tarBuffer([{ name: '../escape', bytes: Buffer.from('x') }]));
      const result = await run(['load', '-i', file]);
      expect(result.code).toBe(1);
      expect(result.stderr).toMatch(/^Error response from daemon: .*path traversal/);
    });
  });
});
