/**
 * Runs `node bin/image-cache.js` as users do, against the project's own server (embedded
 * backend) filled from a real registry with generated images, and checks what it prints and how
 * it exits. A recording proxy sits between the CLI and the server, so a test sees exactly which
 * request (path, query, headers) a command turned into.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Digest, digestHex } from '../lib/digest.ts';
import { type CacheServer, startCacheServer } from './support/cache-server.ts';
import { type GeneratedImage, generateImage } from './support/image-factory.ts';
import { pushImage } from './support/push.ts';
import {
  type Exchange,
  type RecordingProxy,
  startRecordingProxy,
} from './support/recording-proxy.ts';
import { type RegistryServer, startRegistry } from './support/registry-server.ts';

const BIN = fileURLToPath(new URL('../bin/image-cache.js', import.meta.url));

let registry: RegistryServer;
let cache: CacheServer;
let proxy: RecordingProxy;
let nginx: GeneratedImage;
let busybox: GeneratedImage;
let broken: GeneratedImage;

beforeAll(async () => {
  registry = await startRegistry();
  nginx = await generateImage({ seed: 'cli-nginx', format: 'docker', layers: 2 });
  busybox = await generateImage({ seed: 'cli-busybox', format: 'docker', layers: 1 });
  await pushImage({ url: registry.url, repository: 'library/nginx' }, nginx, {
    tags: ['latest', '1.27'],
  });
  await pushImage({ url: registry.url, repository: 'library/busybox' }, busybox, {
    tags: ['1'],
  });
  // A layer the registry lost: the pull's stream fails after it started.
  broken = await generateImage({ seed: 'cli-broken', format: 'docker', layers: 1 });
  await pushImage({ url: registry.url, repository: 'library/broken' }, broken, { tags: ['1'] });
  const lost = digestHex(broken.layers[0]!.digest);
  await rm(join(registry.dir, 'storage/docker/registry/v2/blobs/sha256', lost.slice(0, 2), lost), {
    recursive: true,
  });
  cache = await startCacheServer({ registries: `docker.io=${registry.url}` });
  proxy = await startRecordingProxy(cache.url);
});

afterAll(async () => {
  await proxy?.close();
  await cache?.close();
  await registry?.stop();
});

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Async on purpose: the server lives in this process, so a sync spawn would deadlock. */
function cli(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      env: { ...process.env, IMAGE_CACHE_URL: proxy.url, IMAGE_CACHE_TOKEN: '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
    });
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

function lastRequest(): Exchange & { url: URL } {
  const last = proxy.exchanges.at(-1);
  if (!last) throw new Error('no request reached the server');
  return { ...last, url: new URL(last.path, 'http://x') };
}

/** A docker table's cells: tabwriter pads columns with at least three spaces (two before …). */
function cells(stdout: string): string[][] {
  return stdout
    .trimEnd()
    .split('\n')
    .map((line) => line.trimEnd().split(/ {3,}/));
}

const short = (digest: Digest) => digestHex(digest).slice(0, 12);

describe('image-cache CLI', () => {
  it('prints usage for --help and refuses unknown verbs with exit 2', async () => {
    const help = await cli(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('Usage:  image-cache COMMAND');
    const unknown = await cli(['frobnicate']);
    expect(unknown.code).toBe(2);
    expect(unknown.stdout).toBe('');
    expect(unknown.stderr).toContain('unknown command "frobnicate"');
    expect(unknown.stderr).toContain('Usage:  image-cache COMMAND');
  });

  it('pulls with plain progress when stdout is a pipe', async () => {
    const run = await cli(['pull', 'nginx']);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    const lines = run.stdout.trimEnd().split('\n');
    expect(lines.slice(0, 2)).toEqual([
      'Using default tag: latest',
      'latest: Pulling from library/nginx',
    ]);
    for (const layer of nginx.layers) {
      expect(lines).toContain(`${short(layer.digest)}: Pull complete`);
    }
    // Plain output: no bars, no cursor movement, as docker prints to a pipe.
    expect(run.stdout).not.toContain('\u001b[');
    expect(run.stdout).not.toContain('Downloading');
    expect(lines.slice(-3)).toEqual([
      `Digest: ${nginx.digest}`,
      'Status: Downloaded newer image for nginx:latest',
      'docker.io/library/nginx:latest',
    ]);
    const { method, url } = lastRequest();
    expect(method).toBe('POST');
    expect(url.pathname).toBe('/images/create');
    expect(Object.fromEntries(url.searchParams)).toEqual({ fromImage: 'nginx', tag: 'latest' });
  });

  it('pulls by digest with a platform; -q prints only the reference', async () => {
    const run = await cli(['pull', '-q', '--platform', 'linux/amd64', `busybox@${busybox.digest}`]);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout).toBe(`docker.io/library/busybox@${busybox.digest}\n`);
    expect(Object.fromEntries(lastRequest().url.searchParams)).toEqual({
      fromImage: 'busybox',
      tag: busybox.digest,
      platform: 'linux/amd64',
    });
    // The second tag of nginx, for the listings below.
    expect((await cli(['pull', '-q', 'nginx:1.27'])).code).toBe(0);
  });

  it('lists images as docker image ls does', async () => {
    proxy.clear();
    const run = await cli(['images']);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    const rows = cells(run.stdout);
    expect(rows[0]).toEqual(['REPOSITORY', 'TAG', 'IMAGE ID', 'CREATED', 'SIZE']);
    const nginxId = short(nginx.configBlob.digest);
    const busyboxId = short(busybox.configBlob.digest);
    expect(rows.slice(1).map((row) => row.slice(0, 3))).toEqual(
      expect.arrayContaining([
        ['nginx', 'latest', nginxId],
        ['nginx', '1.27', nginxId],
        ['busybox', '<none>', busyboxId],
      ]),
    );
    expect(rows).toHaveLength(4);
    for (const row of rows.slice(1)) expect(row[3]).toMatch(/^\d+ \w+ ago$/);
    expect(lastRequest().url.search).toBe('');
  });

  it('passes -a, filters and a reference to the API; -q prints unique ids', async () => {
    const run = await cli(['image', 'ls', '-aq', '--filter', 'dangling=false', 'nginx']);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout).toBe(`${short(nginx.configBlob.digest)}\n`);
    const { url } = lastRequest();
    expect(url.searchParams.get('all')).toBe('1');
    expect(JSON.parse(url.searchParams.get('filters') ?? '')).toEqual({
      dangling: { false: true },
      reference: { nginx: true },
    });
  });

  it('shows digests and json lines', async () => {
    const digests = await cli(['ls', '--digests']);
    const rows = cells(digests.stdout);
    expect(rows[0]).toEqual(['REPOSITORY', 'TAG', 'DIGEST', 'IMAGE ID', 'CREATED', 'SIZE']);
    expect(digests.stdout.split('\n')[0]).toMatch(/^REPOSITORY {3}TAG {7}DIGEST {68}IMAGE ID/);
    expect(rows).toContainEqual(
      expect.arrayContaining([
        'busybox',
        '<none>',
        busybox.digest,
        short(busybox.configBlob.digest),
      ]),
    );
    expect(lastRequest().url.searchParams.get('digests')).toBe('1');
    const lines = (await cli(['images', '--format', 'json'])).stdout.trim().split('\n');
    expect(lines).toHaveLength(3);
    const entries = lines.map((line) => JSON.parse(line) as Record<string, string>);
    expect(entries).toContainEqual(
      expect.objectContaining({
        Repository: 'nginx',
        Tag: 'latest',
        ID: short(nginx.configBlob.digest),
      }),
    );
    for (const entry of entries) expect(entry.CreatedSince).toMatch(/ ago$/);
  });

  it('sends IMAGE_CACHE_TOKEN as a bearer token', async () => {
    await cli(['images'], { IMAGE_CACHE_TOKEN: 's3cret' });
    expect(lastRequest().headers.authorization).toBe('Bearer s3cret');
    await cli(['images']);
    expect(lastRequest().headers.authorization).toBeUndefined();
  });

  it('prints history like docker history', async () => {
    const run = await cli(['history', 'nginx:latest']);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(lastRequest().url.pathname).toBe('/images/nginx:latest/history');
    const rows = cells(run.stdout);
    expect(rows[0]).toEqual(['IMAGE', 'CREATED', 'CREATED BY', 'SIZE', 'COMMENT']);
    // Newest first; the top row is the image, the ones below it have no ID of their own.
    expect(rows).toHaveLength(nginx.config.history.length + 1);
    expect(rows[1]?.[0]).toBe(short(nginx.configBlob.digest));
    for (const row of rows.slice(2)) expect(row[0]).toBe('<missing>');
    const createdBy = nginx.config.history.map((h) => h.created_by).reverse();
    rows.slice(1).forEach((row, i) => {
      const full = createdBy[i] ?? '';
      expect(row[2]).toBe(full.length > 45 ? `${full.slice(0, 44)}…` : full);
    });

    const raw = await cli(['history', '-H=false', '--no-trunc', 'nginx:latest']);
    expect(raw.stdout).toContain('CREATED AT');
    for (const layer of nginx.layers) expect(raw.stdout).toContain(`   ${layer.fileBytes}   `);
    for (const line of createdBy) expect(raw.stdout).toContain(line);
    expect(raw.stdout).toContain(nginx.configBlob.digest);
  });

  it('inspects images as a 4-space indented JSON array', async () => {
    const run = await cli(['inspect', 'nginx']);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout.startsWith(`[\n    {\n        "Id": "${nginx.configBlob.digest}",\n`)).toBe(
      true,
    );
    const [image] = JSON.parse(run.stdout) as { RepoTags: string[] }[];
    expect(image?.RepoTags).toEqual(expect.arrayContaining(['nginx:latest', 'nginx:1.27']));
    expect(`${JSON.stringify(JSON.parse(run.stdout), null, 4)}\n`).toBe(run.stdout);
    const format = await cli(['inspect', '-f', '{{.Id}}', 'nginx']);
    expect(format.stdout).toBe(`${nginx.configBlob.digest}\n`);
  });

  it('reports unknown images in docker wording and exits 1', async () => {
    const run = await cli(['inspect', 'nginx', 'nope:1']);
    expect(run.code).toBe(1);
    expect(JSON.parse(run.stdout)).toHaveLength(1);
    expect(run.stderr).toBe('Error: No such image: nope:1\n');
    const alone = await cli(['inspect', 'nope']);
    expect(alone.stdout).toBe('[]\n');
    expect(alone.code).toBe(1);
  });

  it('prints the server message for other HTTP errors', async () => {
    const run = await cli(['images', '--filter', 'bogus=1']);
    expect(run.code).toBe(1);
    expect(run.stderr).toBe("Error response from daemon: invalid filter 'bogus'\n");
    expect(lastRequest().status).toBe(400);
    const history = await cli(['history', 'nope']);
    expect(history.code).toBe(1);
    expect(history.stderr).toBe('Error response from daemon: No such image: nope\n');
  });

  it('fails a pull whose stream carries an error', async () => {
    const run = await cli(['pull', 'broken:1']);
    expect(run.code).toBe(1);
    expect(run.stdout).toBe(
      `1: Pulling from library/broken\n${short(broken.layers[0]!.digest)}: Pulling fs layer\n`,
    );
    expect(run.stderr).toBe(
      `blob ${broken.layers[0]!.digest} of docker.io/library/broken not found: blob unknown: blob unknown to registry\n`,
    );
  });

  it('fails a pull the server refuses', async () => {
    const run = await cli(['pull', 'quay.io/private/app:2']);
    expect(run.code).toBe(1);
    expect(run.stderr).toBe(
      'Error response from daemon: registry quay.io is not allowed: add it to IMAGE_CACHE_REGISTRIES to cache its images\n',
    );
    expect(lastRequest().status).toBe(403);
  });

  it('rejects bad usage with exit 2', async () => {
    const run = await cli(['history']);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain("See 'image-cache history --help'.");
    const flag = await cli(['images', '--bogus']);
    expect(flag.code).toBe(2);
    expect(flag.stderr).toContain('unknown flag: --bogus');
  });

  it('names IMAGE_CACHE_URL when nothing listens there', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const run = await cli(['images'], { IMAGE_CACHE_URL: `http://127.0.0.1:${port}` });
    expect(run.code).toBe(1);
    expect(run.stderr).toContain(`http://127.0.0.1:${port}`);
    expect(run.stderr).toContain('IMAGE_CACHE_URL');
  });

  it('serve prints its address, answers, and exits 0 on SIGTERM', async () => {
    const data = await mkdtemp(join(tmpdir(), 'image-cache-cli-'));
    try {
      const child = spawn(
        process.execPath,
        [BIN, 'serve', '--host', '127.0.0.1', '--port', '0', '--data', data],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      let stdout = '';
      const url = await new Promise<string>((resolve, reject) => {
        child.stdout.on('data', (chunk: Buffer) => {
          stdout += chunk.toString();
          const match = /image-cache listening on (http:\/\/\S+)\n/.exec(stdout);
          if (match?.[1]) resolve(match[1]);
        });
        child.on('close', (code) => reject(new Error(`serve exited ${code} before listening`)));
      });
      expect((await fetch(`${url}/_ping`)).status).toBe(200);
      const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
    } finally {
      await rm(data, { recursive: true, force: true });
    }
  });
});
