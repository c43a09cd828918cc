/**
 * `docker save` over HTTP, end to end: images generated and pushed to a real docker-registry,
 * pulled into the cache, saved through the Engine API and the CLI, and the tarballs read back
 * entry by entry. Every expected byte comes from the generated images.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../lib/cli/main.ts';
import { ProgressBar } from '../lib/cli/progress-bar.ts';
import { composeEmbedded } from '../lib/composition.ts';
import { parseServeArgs } from '../lib/config.ts';
import { digestHex, shortId } from '../lib/digest.ts';
import { parsePullParams } from '../lib/reference.ts';
import { prepareSave } from '../lib/save/save.ts';
import { archiveLength, END_OF_ARCHIVE, padding, tarHeader } from '../lib/tar/ustar-writer.ts';
import { pullVia, startCacheServer } from './support/cache-server.ts';
import type { GeneratedImage } from './support/image-factory.ts';
import {
  fetchSave,
  readTar,
  type SaveFixture,
  savePath,
  startSaveFixture,
  type TarMember,
} from './support/save-fixtures.ts';
import { tempDirs } from './support/tmp.ts';

const BIN = fileURLToPath(new URL('../bin/image-cache.js', import.meta.url));
const temps = tempDirs('save');

let fx: SaveFixture;

beforeAll(async () => {
  fx = await startSaveFixture();
}, 120_000);

afterAll(async () => {
  await fx?.close();
  await temps.cleanupAll();
});

const blob = (digest: string) => `blobs/sha256/${digestHex(digest as never)}`;
const sha = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');
const member = (members: TarMember[], name: string) => {
  const found = members.find((m) => m.name === name);
  if (!found) throw new Error(`no ${name} in ${members.map((m) => m.name).join(', ')}`);
  return found;
};
const jsonOf = (members: TarMember[], name: string) =>
  JSON.parse(member(members, name).data.toString());

async function save(names: string[]) {
  const response = await fetchSave(fx.cache.url, savePath(names));
  expect(response.status, response.body.toString().slice(0, 200)).toBe(200);
  return { ...response, members: await readTar(response.body) };
}

function imageEntry(image: GeneratedImage, repoTags: string[] | null) {
  return {
    Config: blob(image.configBlob.digest),
    RepoTags: repoTags,
    Layers: image.layers.map((l) => blob(l.digest)),
  };
}

describe('GET /images/{name}/get', () => {
  it('streams the Docker 25 layout with the stored manifest, config and layers', async () => {
    const response = await fetchSave(fx.cache.url, '/images/app:1/get');
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('application/x-tar');
    expect(Number(response.headers.get('content-length'))).toBe(response.body.length);
    expect(response.body.length % 512).toBe(0);
    expect(response.body.subarray(-1024).every((b) => b === 0)).toBe(true);

    const members = await readTar(response.body);
    const { app } = fx;
    expect(members.map((m) => m.name)).toEqual([
      'oci-layout',
      'index.json',
      'manifest.json',
      'repositories',
      'blobs/',
      'blobs/sha256/',
      ...[blob(app.digest), blob(app.configBlob.digest)].sort(),
      ...app.layers.map((l) => blob(l.digest)),
    ]);
    for (const m of members) {
      expect([m.uid, m.gid, m.mtime], m.name).toEqual([0, 0, 0]);
      if (m.name.startsWith('blobs/sha256/') && m.type === 'file') {
        expect(sha(m.data), m.name).toBe(m.name.slice('blobs/sha256/'.length));
      }
    }
    expect(member(members, blob(app.digest)).data.equals(app.bytes)).toBe(true);
    expect(member(members, blob(app.configBlob.digest)).data.equals(app.configBlob.bytes)).toBe(
      true,
    );
    for (const layer of app.layers) {
      expect(member(members, blob(layer.digest)).data.equals(layer.bytes!)).toBe(true);
    }
    expect(jsonOf(members, 'oci-layout')).toEqual({ imageLayoutVersion: '1.0.0' });
    expect(jsonOf(members, 'index.json')).toEqual({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [
        {
          mediaType: app.mediaType,
          digest: app.digest,
          size: app.size,
          annotations: {
            'io.containerd.image.name': 'docker.io/library/app:1',
            'org.opencontainers.image.ref.name': '1',
          },
        },
      ],
    });
    expect(jsonOf(members, 'manifest.json')).toEqual([imageEntry(app, ['app:1'])]);
    expect(jsonOf(members, 'repositories')).toEqual({
      app: { '1': digestHex(app.layers.at(-1)!.digest) },
    });
  });

  it('saves an image ID with every tag of the image', async () => {
    const { members } = await save([shortId(fx.app.configBlob.digest)]);
    expect(jsonOf(members, 'manifest.json')).toEqual([imageEntry(fx.app, ['app:1', 'app:latest'])]);
    const index = jsonOf(members, 'index.json');
    expect(
      index.manifests.map((d: { annotations: Record<string, string> }) => d.annotations),
    ).toEqual([
      {
        'io.containerd.image.name': 'docker.io/library/app:1',
        'org.opencontainers.image.ref.name': '1',
      },
      {
        'io.containerd.image.name': 'docker.io/library/app:latest',
        'org.opencontainers.image.ref.name': 'latest',
      },
    ]);
    const top = digestHex(fx.app.layers.at(-1)!.digest);
    expect(jsonOf(members, 'repositories')).toEqual({ app: { '1': top, latest: top } });
  });

  it('saves `repo@digest` untagged', async () => {
    const { members } = await save([`app@${fx.app.digest}`]);
    expect(jsonOf(members, 'manifest.json')).toEqual([imageEntry(fx.app, null)]);
    expect(jsonOf(members, 'index.json').manifests).toEqual([
      { mediaType: fx.app.mediaType, digest: fx.app.digest, size: fx.app.size },
    ]);
    expect(jsonOf(members, 'repositories')).toEqual({});
  });

  it('saves a multi-arch tag as the platform image it resolved to', async () => {
    const { multi, multiAmd64 } = fx;
    for (const name of ['multi:1', `multi@${multi.digest}`]) {
      const { members } = await save([name]);
      const names = members.map((m) => m.name);
      expect(names).toContain(blob(multiAmd64.digest));
      expect(names).not.toContain(blob(multi.digest));
      for (const other of [...multi.images, ...multi.attestations]) {
        if (other !== multiAmd64) expect(names).not.toContain(blob(other.digest));
      }
      const tags = name === 'multi:1' ? ['multi:1'] : null;
      expect(jsonOf(members, 'manifest.json')).toEqual([imageEntry(multiAmd64, tags)]);
    }
  });

  it('keeps the registry in names outside Docker Hub', async () => {
    const { members } = await save(['localhost:5000/plain/img:3']);
    const { plain } = fx;
    expect(jsonOf(members, 'manifest.json')).toEqual([
      imageEntry(plain, ['localhost:5000/plain/img:3']),
    ]);
    expect(jsonOf(members, 'repositories')).toEqual({
      'localhost:5000/plain/img': { '3': digestHex(plain.layers.at(-1)!.digest) },
    });
    expect(jsonOf(members, 'index.json').manifests[0].annotations).toEqual({
      'io.containerd.image.name': 'localhost:5000/plain/img:3',
      'org.opencontainers.image.ref.name': '3',
    });
  });
});

describe('GET /images/get?names=', () => {
  it('saves several images, each shared layer once, with an exact Content-Length', async () => {
    const { body, headers, members } = await save(['app:1', 'team/tool:2', 'multi:1']);
    expect(Number(headers.get('content-length'))).toBe(body.length);
    const names = members.map((m) => m.name);
    expect(new Set(names).size).toBe(names.length);
    const shared = blob(fx.base.layers[0]!.digest);
    expect(names.filter((n) => n === shared)).toHaveLength(1);
    const entries = jsonOf(members, 'manifest.json');
    expect(entries).toHaveLength(3);
    expect(entries).toEqual(
      expect.arrayContaining([
        imageEntry(fx.app, ['app:1']),
        imageEntry(fx.tool, ['team/tool:2']),
        imageEntry(fx.multiAmd64, ['multi:1']),
      ]),
    );
    for (const entry of entries) expect(entry.Layers[0]).toBe(shared);
    // Every blob the images need, and nothing else.
    const expected = new Set(
      [fx.app, fx.tool, fx.multiAmd64].flatMap((i) => [
        blob(i.digest),
        ...i.blobs.map((b) => blob(b.digest)),
      ]),
    );
    expect(new Set(names.filter((n) => /^blobs\/sha256\/./.test(n)))).toEqual(expected);
  });

  it('is deterministic: same images, same bytes, whatever the order of names', async () => {
    const first = await fetchSave(fx.cache.url, savePath(['app:1', 'team/tool:2']));
    const second = await fetchSave(fx.cache.url, savePath(['team/tool:2', 'app:1']));
    const third = await fetchSave(fx.cache.url, `/v1.47${savePath(['app:1', 'team/tool:2'])}`);
    expect(first.status).toBe(200);
    expect(sha(second.body)).toBe(sha(first.body));
    expect(sha(third.body)).toBe(sha(first.body));
  });

  it('merges names that reach the same image and tag', async () => {
    const { members } = await save(['app', 'app:latest', 'docker.io/library/app:latest']);
    expect(jsonOf(members, 'manifest.json')).toEqual([imageEntry(fx.app, ['app:latest'])]);
  });

  it('answers 404 for an unknown name before streaming anything', async () => {
    for (const names of [['nope:1'], ['app:1', 'nope:1']]) {
      const response = await fetchSave(fx.cache.url, savePath(names));
      expect(response.status).toBe(404);
      expect(response.headers.get('content-type')).toBe('application/json');
      expect(JSON.parse(response.body.toString())).toEqual({ message: 'No such image: nope:1' });
    }
    const byPath = await fetchSave(fx.cache.url, '/images/app:9/get');
    expect(byPath.status).toBe(404);
    expect(JSON.parse(byPath.body.toString())).toEqual({ message: 'No such image: app:9' });
  });

  it('answers 400 without names', async () => {
    const response = await fetchSave(fx.cache.url, '/images/get');
    expect(response.status).toBe(400);
  });
});

describe('save when blobs go bad after the headers were sent', () => {
  async function cacheWithApp() {
    const cache = await startCacheServer({ registries: `docker.io=${fx.registry.url}` });
    const pulled = await pullVia(cache.url, { fromImage: 'app', tag: '1' });
    expect(pulled.status).toBe(200);
    return cache;
  }

  async function expectTruncated(url: string) {
    const response = await fetch(url);
    expect(response.status).toBe(200);
    const length = Number(response.headers.get('content-length'));
    let received = 0;
    let failed = false;
    try {
      for await (const chunk of response.body!) received += chunk.length;
    } catch {
      failed = true;
    }
    expect(failed || received < length).toBe(true);
    expect(received).toBeLessThan(length);
  }

  it('cuts the stream short when a layer vanished (GC) rather than sending a wrong tar', async () => {
    const cache = await cacheWithApp();
    try {
      const last = fx.app.layers.at(-1)!;
      await rm(`${cache.dataDir}/blobs/sha256/${digestHex(last.digest)}`);
      await expectTruncated(`${cache.url}/images/app:1/get`);
    } finally {
      await cache.close();
    }
  });

  it('cuts the stream short when a stored blob no longer matches its digest', async () => {
    const cache = await cacheWithApp();
    try {
      const first = fx.app.layers[0]!;
      const path = `${cache.dataDir}/blobs/sha256/${digestHex(first.digest)}`;
      const bytes = await readFile(path);
      bytes[bytes.length >> 1]! ^= 0xff;
      await writeFile(path, bytes);
      await expectTruncated(`${cache.url}/images/app:1/get`);
    } finally {
      await cache.close();
    }
  });
});

describe('prepareSave', () => {
  it('marks the saved manifests and blobs as used', async () => {
    const dir = await temps.create();
    let now = 1_000_000;
    const clock = { now: () => now };
    const config = parseServeArgs(['--port', '0', '--data', dir.path], {
      IMAGE_CACHE_REGISTRIES: `docker.io=${fx.registry.url}`,
    });
    const composition = composeEmbedded(config, { clock });
    try {
      const { catalog, blobs, pulls } = composition.context;
      await pulls.pull(parsePullParams('app', '1'));
      const layer = fx.app.layers[0]!.digest;
      const before = await catalog.getBlob(layer);
      now += 60_000;
      const tarball = await prepareSave({ catalog, blobs, clock }, ['app:1']);
      expect((await catalog.getManifest(fx.app.digest))?.lastUsedAt).toBe(now);
      const after = await catalog.getBlob(layer);
      expect(after?.touchedAt).toBe(now);
      expect(after?.generation).not.toBe(before?.generation);
      // Planned length and streamed length agree.
      let streamed = 0;
      for await (const chunk of tarball.open()) streamed += (chunk as Buffer).length;
      expect(streamed).toBe(tarball.contentLength);
    } finally {
      await composition.close();
    }
  });
});

describe('image-cache save (CLI)', () => {
  function run(args: string[], options: { stdout?: 'pipe' } = {}) {
    return new Promise<{ code: number; stdout: Buffer; stderr: string }>((resolve) => {
      const child = spawn(process.execPath, [BIN, ...args], {
        env: { PATH: process.env.PATH, HOME: process.env.HOME, IMAGE_CACHE_URL: fx.cache.url },
        stdio: ['ignore', options.stdout ?? 'pipe', 'pipe'],
      });
      const out: Buffer[] = [];
      let stderr = '';
      child.stdout?.on('data', (c: Buffer) => out.push(c));
      child.stderr?.on('data', (c: Buffer) => {
        stderr += c.toString();
      });
      child.on('close', (code) => resolve({ code: code ?? 1, stdout: Buffer.concat(out), stderr }));
    });
  }

  it('writes -o FILE, identical to the API save, with nothing on stderr when not a TTY', async () => {
    const dir = await temps.create();
    const result = await run(['save', '-o', dir.file('out.tar'), 'app:1', 'team/tool:2']);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const expected = await fetchSave(fx.cache.url, savePath(['app:1', 'team/tool:2']));
    expect(sha(await readFile(dir.file('out.tar')))).toBe(sha(expected.body));
    expect(await readdir(dir.path)).toEqual(['out.tar']);
  });

  it('streams to stdout when redirected', async () => {
    const result = await run(['save', 'app:1']);
    expect(result.code).toBe(0);
    const expected = await fetchSave(fx.cache.url, '/images/app:1/get');
    expect(sha(result.stdout)).toBe(sha(expected.body));
  });

  it('reports an unknown image like docker and leaves no file behind', async () => {
    const dir = await temps.create();
    const result = await run(['save', '-o', dir.file('x.tar'), 'nope:1']);
    expect(result.code).toBe(1);
    expect(result.stderr).toBe('Error response from daemon: No such image: nope:1\n');
    expect(existsSync(dir.file('x.tar'))).toBe(false);
  });

  it('refuses to write a tarball to a terminal', async () => {
    let stderr = '';
    const code = await main(['save', 'app:1'], {
      stdout: { write: () => true, isTTY: true },
      stderr: { write: (t: string) => (stderr += t) },
      env: {},
      client: () => {
        throw new Error('no request expected');
      },
      now: () => 0,
    });
    expect(code).toBe(1);
    expect(stderr).toBe('cowardly refusing to save to a terminal. Use the -o flag or redirect\n');
  });

  it('requires an image name', async () => {
    const result = await run(['save']);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('"save" requires at least 1 argument.');
  });
});

describe('ProgressBar', () => {
  function bar(total: number | undefined) {
    let now = 0;
    let written = '';
    const progress = new ProgressBar(
      { write: (t: string) => (written += t), isTTY: true },
      { label: 'Saving', total, now: () => now, intervalMs: 0 },
    );
    return {
      progress,
      at: (ms: number) => {
        now = ms;
      },
      written: () => written,
    };
  }

  it('shows bytes, total, rate and time left, then a final line', () => {
    const b = bar(10_000_000);
    b.at(2000);
    b.progress.update(2_500_000);
    expect(b.written()).toBe(
      `\rSaving [=======>${' '.repeat(22)}] 2.5MB/10MB 1.25MB/s 6 seconds left`,
    );
    b.at(8000);
    b.progress.update(10_000_000);
    b.progress.done();
    expect(b.written().split('\r').at(-1)).toBe(
      `Saving [${'='.repeat(30)}] 10MB/10MB 1.25MB/s in 8 seconds\n`,
    );
  });

  it('shows bytes and rate when the total is unknown', () => {
    const b = bar(undefined);
    b.at(1000);
    b.progress.update(3_000_000);
    expect(b.written()).toBe('\rSaving 3MB 3MB/s');
  });

  it('stays silent when not on a terminal', () => {
    let written = '';
    const progress = new ProgressBar({ write: (t: string) => (written += t) }, { label: 'x' });
    progress.update(5);
    progress.done();
    expect(written).toBe('');
  });
});

describe('ustar writer', () => {
  it('writes headers standard readers accept, long names split into the ustar prefix', async () => {
    const long = `${'d'.repeat(120)}/${'f'.repeat(90)}`;
    const content = Buffer.from('hello');
    const bytes = Buffer.concat([
      tarHeader({ name: 'dir', size: 0, type: 'directory' }),
      tarHeader({ name: long, size: content.length }),
      content,
      padding(content.length),
      END_OF_ARCHIVE,
    ]);
    expect(bytes.length).toBe(archiveLength([0, content.length]));
    const members = await readTar(bytes);
    expect(members.map((m) => [m.name, m.type, m.mode, m.data.toString()])).toEqual([
      ['dir/', 'directory', 0o755, ''],
      [long, 'file', 0o644, 'hello'],
    ]);
  });

  it('encodes sizes beyond 8 GiB in base-256 and refuses names that cannot fit', () => {
    const header = tarHeader({ name: 'big', size: 9 * 2 ** 30 });
    expect(header[124]).toBe(0x80);
    expect(header.readBigUInt64BE(128)).toBe(BigInt(9 * 2 ** 30));
    expect(() => tarHeader({ name: 'x'.repeat(300), size: 1 })).toThrow(/too long/);
  });
});
