/**
 * Archives that end early (issue 10, item 4): a last entry shorter than its header declares,
 * a size blown up by a pax header, gzip around either, a cut inside a header, a pax header or a
 * small JSON member, and a client that leaves mid-body. Each must answer 400 "archive is
 * truncated" at once over real HTTP and release everything: no open descriptor, no
 * `blobs/tmp/*.part`, no blob, no manifest, no tag. Runs over both backends.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { FsBlobStore } from '../lib/adapters/fs-blob-store.ts';
import { digestHex } from '../lib/digest.ts';
import { stopAwsEmulators } from './support/aws-emulators.ts';
import { CACHE_BACKENDS, type CacheServer, startCacheServer } from './support/cache-server.ts';
import { type GeneratedImage, generateImage } from './support/image-factory.ts';
import {
  docker25Members,
  listImages,
  paxHeaderBlocks,
  postLoad,
  tarBuffer,
  tarHeaderBlock,
  withoutEndBlocks,
} from './support/tarballs.ts';

const KiB = 1024;
const MiB = 1024 * KiB;

afterAll(stopAwsEmulators);

interface RawResponse {
  status: number;
  message: string;
}

/**
 * POSTs a body on a connection of its own (no keep-alive pool), so that the descriptors counted
 * afterwards are the server's, not sockets an agent keeps for later.
 */
function postFresh(server: CacheServer, body: Buffer): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = request(
      `${server.url}/images/load?quiet=1`,
      {
        method: 'POST',
        agent: false,
        headers: { 'content-type': 'application/x-tar', 'content-length': String(body.length) },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          text += chunk;
        });
        res.on('end', () => {
          let message = text;
          try {
            message = (JSON.parse(text) as { message?: string }).message ?? text;
          } catch {}
          resolve({ status: res.statusCode ?? 0, message });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

async function partFiles(server: CacheServer): Promise<string[]> {
  try {
    return (await readdir(join(server.dataDir, 'blobs', 'tmp'))).filter((n) => n.endsWith('.part'));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
}

async function openDescriptors(): Promise<number> {
  return (await readdir('/proc/self/fd')).length;
}

/** What a refused load must leave as it was. */
async function snapshot(server: CacheServer) {
  return {
    blobs: [...(await server.blobFiles()).keys()].sort(),
    manifests: await server.manifestDigests(),
    images: await listImages(server),
  };
}

describe.each(CACHE_BACKENDS)('archives that end early (%s backend)', (backend) => {
  let server: CacheServer;
  let image: GeneratedImage;
  /** index.json, manifest.json, oci-layout, repositories: JSON members only, no blob stored. */
  let jsonPart: Buffer;
  /** The image's first layer, as the member a hostile archive cuts short. */
  let layerName: string;

  beforeAll(async () => {
    server = await startCacheServer({ registries: '', backend });
    image = await generateImage({
      seed: `truncated-${backend}`,
      layers: [{ compression: 'none', files: [2 * MiB] }],
    });
    const members = docker25Members([{ image, tags: ['truncated/app:1'] }]);
    jsonPart = withoutEndBlocks(
      await tarBuffer(members.filter((m) => !m.name.startsWith('blobs/'))),
    );
    layerName = `blobs/sha256/${digestHex(image.layers[0]!.digest)}`;
  });

  afterAll(async () => {
    await server?.close();
  });

  /** The JSON members, then a blob member declaring 1 MiB with a few KiB behind it. */
  const shortBlob = () =>
    Buffer.concat([jsonPart, tarHeaderBlock(layerName, MiB), randomBytes(4 * KiB)]);
  /** The same, its size (10 GB) given by a pax header. */
  const paxBlob = () =>
    Buffer.concat([
      jsonPart,
      paxHeaderBlocks(layerName, { size: String(10_000_000_000) }),
      randomBytes(6 * KiB),
    ]);

  const cases: Array<{ name: string; body: () => Promise<Buffer> | Buffer }> = [
    { name: 'a blob member declaring 1 MiB with 4 KiB behind it', body: shortBlob },
    { name: 'a blob member whose pax header declares 10 GB', body: paxBlob },
    { name: 'a gzip-compressed short blob member', body: () => gzipSync(shortBlob()) },
    { name: 'a gzip-compressed pax-declared 10 GB member', body: () => gzipSync(paxBlob()) },
    {
      name: 'a gzip stream cut short inside a layer',
      body: async () => {
        // JSON members first, then the 2 MiB layer: the cut falls inside the layer's data.
        const members = docker25Members([{ image, tags: ['truncated/app:1'] }]);
        const ordered = [
          ...members.filter((m) => !m.name.startsWith('blobs/')),
          ...members.filter((m) => m.name === layerName),
        ];
        const full = await tarBuffer(ordered, { gzip: true });
        return full.subarray(0, Math.floor(full.length / 2));
      },
    },
    {
      name: 'a cut inside a tar header',
      body: () => Buffer.concat([jsonPart, tarHeaderBlock(layerName, MiB).subarray(0, 300)]),
    },
    {
      name: 'a cut inside a small JSON member',
      body: () =>
        Buffer.concat([
          tarHeaderBlock('manifest.json', 2 * KiB),
          Buffer.from('[{"Config":"blobs/sha256/'),
        ]),
    },
    {
      name: 'a cut inside a pax header',
      body: () =>
        paxHeaderBlocks(layerName, { size: '1048576', comment: 'x'.repeat(900) }).subarray(
          0,
          512 + 200,
        ),
    },
  ];

  for (const c of cases) {
    it(`answers 400 "archive is truncated" to ${c.name}, leaving nothing behind`, async () => {
      const before = await snapshot(server);
      const response = await postFresh(server, await c.body());
      expect(response.status, response.message).toBe(400);
      expect(response.message).toMatch(/archive is truncated/);
      expect(await partFiles(server)).toEqual([]);
      expect(await snapshot(server)).toEqual(before);
      expect((await fetch(`${server.url}/images/truncated/app:1/json`)).status).toBe(404);
    });
  }

  it('holds no descriptor per refused load: 50 short archives in a row, then a good load', async () => {
    const body = shortBlob();
    // One first, so lazily opened files (catalog, folders, clients) are not counted as leaks.
    expect((await postFresh(server, body)).status).toBe(400);
    const before = await openDescriptors();
    for (let i = 0; i < 50; i++) {
      const response = await postFresh(server, body);
      expect(response.status, response.message).toBe(400);
      expect(response.message).toMatch(/archive is truncated/);
    }
    // Sockets of the last requests may take a moment to close on both ends.
    await vi.waitFor(async () => expect(await openDescriptors()).toBeLessThanOrEqual(before + 8), {
      timeout: 5_000,
      interval: 100,
    });
    expect(await partFiles(server)).toEqual([]);

    const loaded = await postLoad(
      server,
      await tarBuffer(docker25Members([{ image, tags: ['truncated/after:1'] }])),
    );
    expect(loaded.status, loaded.text).toBe(200);
    expect(loaded.lines).toEqual([{ stream: 'Loaded image: truncated/after:1\n' }]);
  });
});

describe('a client that leaves mid-body (embedded backend: blobs/tmp is its own)', () => {
  let server: CacheServer;
  let image: GeneratedImage;

  beforeAll(async () => {
    server = await startCacheServer({ registries: '' });
    image = await generateImage({
      seed: 'truncated-client-gone',
      layers: [{ compression: 'none', files: [8 * MiB] }],
    });
  });

  afterAll(async () => {
    await server?.close();
  });

  it('removes the temporary file of the blob it was writing once the socket closed', async () => {
    const full = await tarBuffer(docker25Members([{ image, tags: ['gone/app:1'] }]));
    const layerHeader = full.indexOf(`blobs/sha256/${digestHex(image.layers[0]!.digest)}`);
    expect(layerHeader).toBeGreaterThan(0);
    // Past the layer's header and well into its data: the store has a .part file open.
    const half = full.subarray(0, layerHeader + 512 + 3 * MiB);
    const before = await snapshot(server);

    const req = request(`${server.url}/images/load`, {
      method: 'POST',
      agent: false,
      headers: { 'content-type': 'application/x-tar', 'content-length': String(full.length) },
    });
    const outcome = new Promise<string>((resolve) => {
      req.on('response', (res) => resolve(`answered ${res.statusCode}`));
      req.on('error', (error) => resolve(`error ${error.message}`));
      req.on('close', () => resolve('closed'));
    });
    req.write(half);
    await vi.waitFor(async () => expect(await partFiles(server)).not.toEqual([]), {
      timeout: 10_000,
      interval: 20,
    });
    req.destroy();
    expect(await outcome).not.toMatch(/^answered/);

    await vi.waitFor(async () => expect(await partFiles(server)).toEqual([]), {
      timeout: 10_000,
      interval: 50,
    });
    const after = await snapshot(server);
    expect(after.manifests).toEqual(before.manifests);
    expect(after.images).toEqual(before.images);
    expect(after.blobs).not.toContain(digestHex(image.layers[0]!.digest));
    // The server still serves loads.
    const loaded = await postLoad(server, full);
    expect(loaded.status, loaded.text).toBe(200);
  });
});

describe('the file blob store when its source fails early', () => {
  it('reports a source that failed before the write started, as a rejection and not a crash', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'truncated-fs-'));
    try {
      const store = new FsBlobStore(dataDir);
      const body = new Readable({ read() {} });
      // Its 'error' event fires on the next tick, while the store is still making its folders:
      // with no listener yet, it would be an uncaught exception that ends the process.
      body.destroy(new Error('archive is truncated'));
      await expect(store.write(body)).rejects.toThrow(/truncated/);
      expect(await readdir(join(dataDir, 'blobs', 'tmp'))).toEqual([]);
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });

  it('leaves no temp file when the source fails while the file is still being opened', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'truncated-fs-'));
    // A slow disk: every open starts 50 ms late, so the source's failure (an archive cut short)
    // reaches the store's pipeline while its temp file is still being opened.
    const realOpen = fs.open;
    const slowOpen = (...args: unknown[]) => {
      setTimeout(() => (realOpen as (...a: unknown[]) => void)(...args), 50);
    };
    fs.open = slowOpen as typeof fs.open;
    try {
      const store = new FsBlobStore(dataDir);
      const body = new Readable({ read() {} });
      const write = store.write(body);
      setTimeout(() => body.destroy(new Error('archive is truncated')), 10);
      await expect(write).rejects.toThrow(/truncated/);
    } finally {
      fs.open = realOpen;
    }
    try {
      // An open that completed after the write gave up would have created its file by now.
      await new Promise((resolve) => setTimeout(resolve, 150));
      expect(await readdir(join(dataDir, 'blobs', 'tmp'))).toEqual([]);
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
