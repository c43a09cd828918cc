/**
 * Hostile and broken tarballs: each must get a 400 (413 for an oversized body) with a message
 * saying what is wrong, and change nothing: no new image, no tag moved. A victim tag loaded
 * first is what every hostile tar tries to take over.
 */
import { request } from 'node:http';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { digestHex } from '../lib/digest.ts';
import { readArchive } from '../lib/load/tar-reader.ts';
import { type CacheServer, startCacheServer } from './support/cache-server.ts';
import { type GeneratedImage, generateImage } from './support/image-factory.ts';
import {
  classicMembers,
  docker25Members,
  listImages,
  ociLayoutMembers,
  postLoad,
  type TarMember,
  tarBuffer,
} from './support/tarballs.ts';

const MiB = 1024 * 1024;
// Small caps so the bomb and 413 cases stay fast; the server reads them at start.
const LOAD_LIMITS = {
  IMAGE_CACHE_MAX_LOAD_BYTES: String(256 * MiB),
  IMAGE_CACHE_MAX_LOAD_EXPANDED_BYTES: String(64 * MiB),
};

const VICTIM = 'victim/app:1';

let server: CacheServer;
let victim: GeneratedImage;
let attacker: GeneratedImage; // uncompressed layers
let second: GeneratedImage;

function flip(bytes: Buffer, at = Math.floor(bytes.length / 2)): Buffer {
  const copy = Buffer.from(bytes);
  copy[at] = copy[at]! ^ 0xff;
  return copy;
}

function replace(
  members: TarMember[],
  name: string | RegExp,
  change: (m: TarMember) => TarMember | TarMember[] | undefined,
): TarMember[] {
  return members.flatMap((m) => {
    const hit = typeof name === 'string' ? m.name === name : name.test(m.name);
    if (!hit) return [m];
    const out = change(m);
    return out === undefined ? [] : Array.isArray(out) ? out : [out];
  });
}

const d25 = () => docker25Members([{ image: attacker, tags: [VICTIM] }]);
const classic = () => classicMembers([{ image: attacker, tags: [VICTIM] }]);
const layerName = (i = 0) => `blobs/sha256/${digestHex(attacker.layers[i]!.digest)}`;
const configName = () => `blobs/sha256/${digestHex(attacker.configBlob.digest)}`;

function manifestJson(entries: unknown): TarMember {
  return { name: 'manifest.json', bytes: Buffer.from(JSON.stringify(entries)) };
}

/** What a refused load must leave as it was: images and tags, manifests, blob files. */
async function storeState(cache: CacheServer) {
  return {
    images: await listImages(cache),
    manifests: await cache.manifestDigests(),
    blobs: await cache.blobFiles(),
  };
}

/** A tar header announcing one regular file of `size` bytes (its data follows). */
async function tarHeader(name: string, size: number): Promise<Buffer> {
  const header = Buffer.from(
    (await tarBuffer([{ name, bytes: Buffer.alloc(0) }])).subarray(0, 512),
  );
  header.write(size.toString(8).padStart(11, '0'), 124, 'ascii');
  header.fill(' ', 148, 156);
  let sum = 0;
  for (const byte of header) sum += byte;
  header.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'ascii');
  return header;
}

/** One entry of zeros, so the expansion happens inside a blob write. */
async function bomb(expandedBytes: number): Promise<Buffer> {
  const header = await tarHeader('blobs/sha256/zeros', expandedBytes);
  return gzipSync(Buffer.concat([header, Buffer.alloc(expandedBytes), Buffer.alloc(1024)]), {
    level: 9,
  });
}

interface HostileCase {
  name: string;
  body: () => Promise<Buffer> | Buffer;
  message: RegExp;
  status?: number;
}

const cases: HostileCase[] = [
  {
    name: 'a blob that does not hash to its name',
    body: () => tarBuffer(replace(d25(), layerName(), (m) => ({ ...m, bytes: flip(m.bytes!) }))),
    message: /does not hash to the digest its name says/,
  },
  {
    name: 'a classic layer whose diff_id does not match the config (layers swapped)',
    body: () =>
      tarBuffer(
        replace(classic(), 'manifest.json', (m) => {
          const doc = JSON.parse(m.bytes!.toString());
          doc[0].Layers.reverse();
          return manifestJson(doc);
        }),
      ),
    message: /diff_id mismatch/,
  },
  {
    name: 'a classic layer replaced by another valid tar',
    body: async () => {
      const members = classic();
      const other = classicMembers([{ image: second, tags: [] }]).find((m) =>
        m.name.endsWith('layer.tar'),
      )!;
      const first = members.find((m) => m.name.endsWith('layer.tar'))!;
      return tarBuffer(replace(members, first.name, (m) => ({ ...m, bytes: other.bytes })));
    },
    message: /unpacks to .*diff_id mismatch/,
  },
  {
    name: 'a Docker 25 layer that is not the tar the config names (blob and manifest consistent)',
    body: () => {
      // Config lists the attacker's diff_ids; the layout's manifest and blobs are the second image's.
      const members = docker25Members([{ image: second, tags: [VICTIM] }]);
      const config = `blobs/sha256/${digestHex(second.configBlob.digest)}`;
      return tarBuffer(
        replace(members, 'manifest.json', () =>
          manifestJson([
            {
              Config: config,
              RepoTags: [VICTIM],
              Layers: [...second.layers.map((l) => `blobs/sha256/${digestHex(l.digest)}`), config],
            },
          ]),
        ),
      );
    },
    message: /lists 1 layers|not a readable tar/,
  },
  {
    name: 'a missing layer',
    body: () => tarBuffer(replace(d25(), layerName(1), () => undefined)),
    message: /which is not in the archive/,
  },
  {
    name: 'a missing config',
    body: () => tarBuffer(replace(d25(), configName(), () => undefined)),
    message: /not in the archive/,
  },
  {
    name: 'a classic config whose name is not its digest',
    body: () =>
      tarBuffer(
        replace(classic(), /^[a-f0-9]{64}\.json$/, (m) => ({
          ...m,
          bytes: Buffer.from(m.bytes!.toString().replace('"os":"linux"', '"os":"linux" ')),
        })),
      ),
    message: /not the ID its name says/,
  },
  {
    name: 'manifest.json naming a file not in the tar',
    body: () =>
      tarBuffer(
        replace(d25(), 'manifest.json', () =>
          manifestJson([{ Config: configName(), RepoTags: [VICTIM], Layers: ['nope/layer.tar'] }]),
        ),
      ),
    message: /nope\/layer\.tar.*not in the archive/,
  },
  {
    name: 'manifest.json naming a path outside the archive',
    body: () =>
      tarBuffer(
        replace(d25(), 'manifest.json', () =>
          manifestJson([{ Config: '../../etc/passwd', RepoTags: [VICTIM], Layers: [] }]),
        ),
      ),
    message: /outside the archive/,
  },
  {
    name: 'path traversal with ../',
    body: () => tarBuffer([...d25(), { name: '../evil', bytes: Buffer.from('x') }]),
    message: /path traversal/,
  },
  {
    name: 'path traversal hidden inside a path',
    body: () =>
      tarBuffer([{ name: 'blobs/sha256/../../../tmp/evil', bytes: Buffer.from('x') }, ...d25()]),
    message: /path traversal/,
  },
  {
    name: 'an absolute path',
    body: () => tarBuffer([...d25(), { name: '/etc/cron.d/evil', bytes: Buffer.from('x') }]),
    message: /absolute path/,
  },
  {
    name: 'a symlink escaping the archive',
    body: () =>
      tarBuffer([{ name: 'x/layer.tar', type: 'symlink', linkname: '../../etc/passwd' }, ...d25()]),
    message: /symlink x\/layer\.tar points to .*outside the archive/,
  },
  {
    name: 'a symlink to an absolute path',
    body: () => tarBuffer([...d25(), { name: 'evil', type: 'symlink', linkname: '/etc/shadow' }]),
    message: /absolute path .*outside the archive/,
  },
  {
    name: 'a hard link escaping the archive',
    body: () => tarBuffer([...d25(), { name: 'evil', type: 'link', linkname: '../outside' }]),
    message: /hard link evil points to .*outside the archive/,
  },
  {
    name: 'a layer named through a link loop',
    body: () =>
      tarBuffer([
        { name: 'a/layer.tar', type: 'symlink', linkname: '../b/layer.tar' },
        { name: 'b/layer.tar', type: 'symlink', linkname: '../a/layer.tar' },
        ...replace(d25(), 'manifest.json', () =>
          manifestJson([{ Config: configName(), RepoTags: [VICTIM], Layers: ['a/layer.tar'] }]),
        ),
      ]),
    message: /link loop/,
  },
  {
    name: 'a character device',
    body: () => tarBuffer([...d25(), { name: 'dev/null', type: 'character-device' }]),
    message: /is a device/,
  },
  {
    name: 'a block device',
    body: () => tarBuffer([{ name: 'dev/sda', type: 'block-device' }, ...d25()]),
    message: /is a device/,
  },
  {
    name: 'a fifo',
    body: () => tarBuffer([...d25(), { name: 'pipe', type: 'fifo' }]),
    message: /is a fifo/,
  },
  {
    name: 'manifest.json twice with different content',
    body: () =>
      tarBuffer([
        manifestJson([{ Config: configName(), RepoTags: ['other/tag:1'], Layers: [] }]),
        ...d25(),
      ]),
    message: /manifest\.json more than once with different content/,
  },
  {
    name: 'a layer twice with different content',
    body: async () => {
      const members = classic();
      const layer = members.find((m) => m.name.endsWith('layer.tar'))!;
      return tarBuffer([...members, { ...layer, bytes: flip(layer.bytes!, 600) }]);
    },
    message: /more than once with different content/,
  },
  {
    name: 'a path that is both a file and a symlink',
    body: async () => {
      const members = classic();
      const layer = members.find((m) => m.name.endsWith('layer.tar'))!;
      return tarBuffer([...members, { name: layer.name, type: 'symlink', linkname: 'VERSION' }]);
    },
    message: /more than once with different content/,
  },
  {
    name: 'manifest.json over the 4 MiB JSON cap',
    body: () =>
      tarBuffer(
        replace(d25(), 'manifest.json', () => ({
          name: 'manifest.json',
          bytes: Buffer.from(`[${' '.repeat(5 * MiB)}]`),
        })),
      ),
    message: /manifest\.json is \d+ bytes, more than the 4194304 bytes/,
  },
  {
    name: 'a config over the 4 MiB JSON cap',
    body: () => {
      const big = Buffer.from(JSON.stringify({ ...attacker.config, pad: 'x'.repeat(5 * MiB) }));
      return tarBuffer([
        ...replace(d25(), 'manifest.json', () =>
          manifestJson([
            {
              Config: 'big-config',
              RepoTags: [VICTIM],
              Layers: attacker.layers.map((_, i) => layerName(i)),
            },
          ]),
        ),
        { name: 'big-config', bytes: big },
      ]);
    },
    message: /larger than 4194304 bytes/,
  },
  {
    name: 'an index.json naming a manifest not in the tar',
    body: () =>
      tarBuffer(
        replace(
          ociLayoutMembers([{ target: attacker, refName: VICTIM }]),
          `blobs/sha256/${digestHex(attacker.digest)}`,
          () => undefined,
        ),
      ),
    message: /not in the archive/,
  },
  {
    name: 'an index.json descriptor with the wrong size',
    body: () =>
      tarBuffer(
        replace(ociLayoutMembers([{ target: attacker, refName: VICTIM }]), 'index.json', (m) => {
          const doc = JSON.parse(m.bytes!.toString());
          doc.manifests[0].size += 1;
          return { ...m, bytes: Buffer.from(JSON.stringify(doc)) };
        }),
      ),
    message: /descriptor says/,
  },
  {
    name: 'a layer that is not a tar',
    body: async () => {
      const members = classic();
      const layer = members.find((m) => m.name.endsWith('layer.tar'))!;
      return tarBuffer(
        replace(members, layer.name, (m) => ({ ...m, bytes: Buffer.alloc(4096, 7) })),
      );
    },
    message: /is not a readable tar/,
  },
  {
    name: 'an invalid RepoTag',
    body: () =>
      tarBuffer(
        replace(d25(), 'manifest.json', (m) => {
          const doc = JSON.parse(m.bytes!.toString());
          doc[0].RepoTags = [VICTIM, 'Not A Tag'];
          return manifestJson(doc);
        }),
      ),
    message: /invalid tag "Not A Tag"/,
  },
  {
    name: 'a manifest.json that is not JSON',
    body: () =>
      tarBuffer(
        replace(d25(), 'manifest.json', () => ({
          name: 'manifest.json',
          bytes: Buffer.from('{oops'),
        })),
      ),
    message: /manifest\.json is not valid JSON/,
  },
  {
    name: 'a second image that is broken (the first, valid one is not loaded either)',
    body: async () => {
      const good = docker25Members([{ image: second, tags: ['fresh/good:1'] }]);
      const bad = replace(d25(), layerName(0), () => undefined);
      const manifest = [
        ...JSON.parse(good.find((m) => m.name === 'manifest.json')!.bytes!.toString()),
        ...JSON.parse(bad.find((m) => m.name === 'manifest.json')!.bytes!.toString()),
      ];
      const blobs = [...good, ...bad].filter((m) => m.name.startsWith('blobs/'));
      return tarBuffer([...blobs, manifestJson(manifest)]);
    },
    message: /not in the archive/,
  },
  {
    name: 'a truncated archive (cut inside a layer)',
    body: async () => {
      const full = await tarBuffer(classic());
      return full.subarray(0, Math.floor(full.length * 0.6));
    },
    message: /truncated/,
  },
  {
    name: 'a truncated gzip archive',
    body: async () => {
      const full = await tarBuffer(d25(), { gzip: true });
      return full.subarray(0, Math.floor(full.length * 0.7));
    },
    message: /gzip|truncated/,
  },
  {
    name: 'a gzip bomb (expands beyond the cap)',
    body: () => bomb(80 * MiB),
    message: /expands beyond \d+ bytes.*gzip bomb/,
  },
  {
    name: 'random bytes (not a tar)',
    body: () => Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7919) % 251)),
    message: /not a valid tar archive/,
  },
  {
    name: 'a JSON document instead of a tar',
    body: () => Buffer.from(JSON.stringify({ hello: 'world' }).padEnd(2048, ' ')),
    message: /not a valid tar archive/,
  },
  {
    name: 'an empty body',
    body: () => Buffer.alloc(0),
    message: /neither manifest\.json nor index\.json/,
  },
  {
    name: 'a zstd-compressed archive',
    body: () => Buffer.concat([Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), Buffer.alloc(100)]),
    message: /zstd/,
  },
  {
    name: 'a pre-1.10 save (repositories only)',
    body: () => tarBuffer(classic().filter((m) => m.name !== 'manifest.json')),
    message: /no manifest\.json/,
  },
];

beforeAll(async () => {
  server = await startCacheServer({ registries: '', env: LOAD_LIMITS });
  victim = await generateImage({ seed: 'hostile-victim', layers: [{ compression: 'none' }] });
  attacker = await generateImage({
    seed: 'hostile-attacker',
    layers: [{ compression: 'none' }, { compression: 'none' }],
  });
  second = await generateImage({ seed: 'hostile-second', layers: [{ compression: 'none' }] });
  const response = await postLoad(
    server,
    await tarBuffer(docker25Members([{ image: victim, tags: [VICTIM] }])),
  );
  expect(response.status, response.text).toBe(200);
});
afterAll(async () => {
  await server?.close();
});

describe('hostile or broken tarballs', () => {
  for (const c of cases) {
    it(`refuses ${c.name}`, async () => {
      const before = await listImages(server);
      const response = await postLoad(server, await c.body());
      expect(response.status, response.text).toBe(c.status ?? 400);
      expect(response.message).toMatch(c.message);
      expect(await listImages(server)).toEqual(before);
      const victimNow = await (await fetch(`${server.url}/images/${VICTIM}/json`)).json();
      expect(victimNow.Id).toBe(victim.configBlob.digest);
      expect((await fetch(`${server.url}/images/fresh/good:1/json`)).status).toBe(404);
    });
  }

  it('answers 413 at once for a declared Content-Length over the limit', async () => {
    const before = await storeState(server);
    const { status, body } = await new Promise<{ status: number; body: string }>(
      (resolve, reject) => {
        const req = request(
          `${server.url}/images/load`,
          {
            method: 'POST',
            headers: { 'content-type': 'application/x-tar', 'content-length': String(300 * MiB) },
          },
          (res) => {
            let text = '';
            res.on('data', (c) => {
              text += c;
            });
            res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
          },
        );
        req.on('error', reject);
        req.write(Buffer.alloc(1024));
      },
    );
    expect(status).toBe(413);
    expect(JSON.parse(body).message).toMatch(/larger than the 268435456 bytes/);
    expect(await storeState(server)).toEqual(before);
  });

  it('answers 413 for a chunked body that grows over the limit', async () => {
    const before = await storeState(server);
    let sent = 0;
    const chunk = Buffer.alloc(MiB);
    const header = await tarHeader('big-layer.tar', 299 * MiB);
    const body = new Readable({
      read() {
        if (sent >= 300) this.push(null);
        else {
          this.push(sent === 0 ? Buffer.concat([header, chunk.subarray(512)]) : chunk);
          sent++;
        }
      },
    });
    const response = await fetch(`${server.url}/images/load`, {
      method: 'POST',
      body: Readable.toWeb(body) as ReadableStream,
      duplex: 'half',
    } as RequestInit).catch((error: Error) => error);
    if (response instanceof Error) {
      // The server may close before the client finished sending: that is a refusal too.
      expect(sent).toBeLessThan(300);
    } else {
      expect(response.status).toBe(413);
      expect(((await response.json()) as { message: string }).message).toMatch(/larger than/);
    }
    expect(await storeState(server)).toEqual(before);
  });
});

describe('gzip expansion ratio', () => {
  it('refuses a stream that expands more than the ratio past the floor', async () => {
    const body = Readable.from([await bomb(8 * MiB)]);
    const limits = {
      maxBodyBytes: 1024 * MiB,
      maxExpandedBytes: 1024 * MiB,
      maxRatio: 50,
      ratioFloorBytes: MiB,
      maxEntries: 10,
    };
    const run = async () => {
      for await (const entry of readArchive(body, limits)) {
        if (entry.kind === 'file') entry.stream.resume();
      }
    };
    await expect(run()).rejects.toThrow(/expands more than 50:1/);
  });
});
