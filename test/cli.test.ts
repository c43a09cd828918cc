/**
 * Runs `node bin/image-cache.js` as users do, against a loopback HTTP server that answers with
 * canned Docker-shaped bodies, and checks what it prints and how it exits.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const BIN = fileURLToPath(new URL('../bin/image-cache.js', import.meta.url));
const NOW_S = Math.floor(Date.now() / 1000);
const ID = `sha256:${'3b25b682ea82'.padEnd(64, '0')}`;
const DIGEST = `sha256:${'5e3'.padEnd(64, '7')}`;

const IMAGES = [
  {
    Id: ID,
    ParentId: '',
    RepoTags: ['nginx:latest', 'nginx:1.27'],
    RepoDigests: [`nginx@${DIGEST}`],
    Created: NOW_S - 2 * 3600 - 60,
    Size: 187_654_321,
    SharedSize: -1,
    Labels: null,
    Containers: -1,
  },
  {
    Id: `sha256:${'9c7a54a9a43c'.padEnd(64, '1')}`,
    ParentId: '',
    RepoTags: [],
    RepoDigests: [`busybox@${DIGEST}`],
    Created: NOW_S - 21 * 24 * 3600,
    Size: 4_261_550,
    SharedSize: -1,
    Labels: null,
    Containers: -1,
  },
];

const HISTORY = [
  {
    Id: ID,
    Created: NOW_S - 3 * 3600,
    CreatedBy: '/bin/sh -c #(nop)  CMD ["nginx" "-g" "daemon off;"]',
    Tags: ['nginx:latest'],
    Size: 0,
    Comment: '',
  },
  {
    Id: '<missing>',
    Created: NOW_S - 3 * 3600,
    CreatedBy: 'RUN /bin/sh -c set -x && apt-get update # buildkit',
    Tags: null,
    Size: 112_345_678,
    Comment: 'buildkit.dockerfile.v0',
  },
];

const PULL_LINES = [
  { status: 'Pulling from library/nginx', id: 'latest' },
  { status: 'Pulling fs layer', progressDetail: {}, id: 'a9edb18cadd1' },
  { status: 'Downloading', progressDetail: { current: 1000, total: 2000 }, id: 'a9edb18cadd1' },
  { status: 'Download complete', progressDetail: {}, id: 'a9edb18cadd1' },
  { status: 'Pull complete', progressDetail: {}, id: 'a9edb18cadd1' },
  { status: `Digest: ${DIGEST}` },
  { status: 'Status: Downloaded newer image for nginx:latest' },
];

interface Seen {
  method: string;
  url: URL;
  authorization?: string;
}

let server: Server;
let baseUrl: string;
const seen: Seen[] = [];

function json(res: import('node:http').ServerResponse, status: number, body: unknown) {
  res.writeHead(status, { 'Content-Type': 'application/json' });
  res.end(JSON.stringify(body));
}

function handle(req: IncomingMessage, res: import('node:http').ServerResponse) {
  const url = new URL(req.url ?? '/', 'http://x');
  const entry: Seen = { method: req.method ?? '', url };
  if (req.headers.authorization) entry.authorization = req.headers.authorization;
  seen.push(entry);
  const path = decodeURIComponent(url.pathname);
  if (req.method === 'GET' && path === '/images/json') return json(res, 200, IMAGES);
  if (req.method === 'GET' && path === '/images/nginx:latest/history')
    return json(res, 200, HISTORY);
  if (req.method === 'GET' && path === '/images/nginx/json') {
    return json(res, 200, { Id: ID, RepoTags: ['nginx:latest'], Config: { Labels: {} } });
  }
  if (req.method === 'GET' && path === '/images/boom/json') {
    return json(res, 500, { message: 'catalog unavailable' });
  }
  const missing = /^\/images\/(.+)\/(json|history)$/.exec(path);
  if (req.method === 'GET' && missing) {
    return json(res, 404, { message: `No such image: ${missing[1]}` });
  }
  if (req.method === 'POST' && path === '/images/create') {
    const from = url.searchParams.get('fromImage');
    if (from === 'private/app') {
      return json(res, 403, { message: 'registry docker.io is not allowed' });
    }
    res.writeHead(200, { 'Content-Type': 'application/json' });
    if (from === 'broken') {
      res.write(`${JSON.stringify(PULL_LINES[0])}\r\n`);
      res.end(
        `${JSON.stringify({ errorDetail: { message: 'unexpected EOF' }, error: 'unexpected EOF' })}\r\n`,
      );
      return;
    }
    // Stream line by line, as the server does, so the client must read incrementally.
    let i = 0;
    const next = () => {
      const line = PULL_LINES[i++];
      if (!line) return res.end();
      res.write(`${JSON.stringify(line)}\r\n`);
      setTimeout(next, 2);
    };
    return next();
  }
  json(res, 404, { message: 'page not found' });
}

beforeAll(async () => {
  server = createServer(handle);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
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
      env: { ...process.env, IMAGE_CACHE_URL: baseUrl, IMAGE_CACHE_TOKEN: '', ...env },
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

function lastRequest(): Seen {
  const last = seen.at(-1);
  if (!last) throw new Error('no request reached the server');
  return last;
}

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

  it('lists images as docker image ls does', async () => {
    const run = await cli(['images']);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout).toBe(
      'REPOSITORY   TAG       IMAGE ID       CREATED       SIZE\n' +
        'nginx        latest    3b25b682ea82   2 hours ago   188MB\n' +
        'nginx        1.27      3b25b682ea82   2 hours ago   188MB\n' +
        'busybox      <none>    9c7a54a9a43c   3 weeks ago   4.26MB\n',
    );
    expect(lastRequest().url.search).toBe('');
  });

  it('passes -a, filters and a reference to the API; -q prints unique ids', async () => {
    const run = await cli(['image', 'ls', '-aq', '--filter', 'dangling=false', 'nginx']);
    expect(run.code).toBe(0);
    expect(run.stdout).toBe('3b25b682ea82\n9c7a54a9a43c\n');
    const { url } = lastRequest();
    expect(url.searchParams.get('all')).toBe('1');
    expect(JSON.parse(url.searchParams.get('filters') ?? '')).toEqual({
      dangling: { false: true },
      reference: { nginx: true },
    });
  });

  it('shows digests and json lines', async () => {
    const digests = await cli(['ls', '--digests']);
    expect(digests.stdout.split('\n')[0]).toBe(
      `REPOSITORY   TAG       DIGEST${' '.repeat(68)}IMAGE ID       CREATED       SIZE`,
    );
    expect(digests.stdout).toContain(`busybox      <none>    ${DIGEST}   9c7a54a9a43c`);
    const lines = (await cli(['images', '--format', 'json'])).stdout.trim().split('\n');
    expect(lines).toHaveLength(3);
    expect(JSON.parse(lines[0] ?? '')).toMatchObject({
      Repository: 'nginx',
      Tag: 'latest',
      ID: '3b25b682ea82',
      Size: '188MB',
      CreatedSince: '2 hours ago',
    });
  });

  it('sends IMAGE_CACHE_TOKEN as a bearer token', async () => {
    await cli(['images'], { IMAGE_CACHE_TOKEN: 's3cret' });
    expect(lastRequest().authorization).toBe('Bearer s3cret');
  });

  it('prints history like docker history', async () => {
    const run = await cli(['history', 'nginx:latest']);
    expect(run.code).toBe(0);
    expect(lastRequest().url.pathname).toBe('/images/nginx:latest/history');
    expect(run.stdout).toBe(
      'IMAGE          CREATED       CREATED BY                                      SIZE      COMMENT\n' +
        '3b25b682ea82   3 hours ago   /bin/sh -c #(nop)  CMD ["nginx" "-g" "daemon…   0B        \n' +
        '<missing>      3 hours ago   RUN /bin/sh -c set -x && apt-get update # bu…   112MB     buildkit.dockerfile.v0\n',
    );
    const raw = await cli(['history', '-H=false', '--no-trunc', 'nginx:latest']);
    expect(raw.stdout).toContain('CREATED AT');
    expect(raw.stdout).toContain('112345678');
    expect(raw.stdout).toContain('/bin/sh -c #(nop)  CMD ["nginx" "-g" "daemon off;"]');
    expect(raw.stdout).toContain(ID);
  });

  it('inspects images as a 4-space indented JSON array', async () => {
    const run = await cli(['inspect', 'nginx']);
    expect(run.code).toBe(0);
    expect(run.stdout).toBe(
      `[\n    {\n        "Id": "${ID}",\n        "RepoTags": [\n            "nginx:latest"\n        ],\n` +
        '        "Config": {\n            "Labels": {}\n        }\n    }\n]\n',
    );
    const format = await cli(['inspect', '-f', '{{.Id}}', 'nginx']);
    expect(format.stdout).toBe(`${ID}\n`);
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
    const run = await cli(['inspect', 'boom']);
    expect(run.code).toBe(1);
    expect(run.stderr).toBe('Error response from daemon: catalog unavailable\n');
    const history = await cli(['history', 'nope']);
    expect(history.code).toBe(1);
    expect(history.stderr).toBe('Error response from daemon: No such image: nope\n');
  });

  it('pulls with plain progress when stdout is a pipe', async () => {
    const run = await cli(['pull', 'nginx']);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout).toBe(
      [
        'Using default tag: latest',
        'latest: Pulling from library/nginx',
        'a9edb18cadd1: Pulling fs layer',
        'a9edb18cadd1: Download complete',
        'a9edb18cadd1: Pull complete',
        `Digest: ${DIGEST}`,
        'Status: Downloaded newer image for nginx:latest',
        'docker.io/library/nginx:latest',
        '',
      ].join('\n'),
    );
    const { method, url } = lastRequest();
    expect(method).toBe('POST');
    expect(Object.fromEntries(url.searchParams)).toEqual({ fromImage: 'nginx', tag: 'latest' });
  });

  it('pulls by digest with a platform; -q prints only the reference', async () => {
    const run = await cli(['pull', '-q', '--platform', 'linux/arm64/v8', `nginx@${DIGEST}`]);
    expect(run.code).toBe(0);
    expect(run.stdout).toBe(`docker.io/library/nginx@${DIGEST}\n`);
    expect(Object.fromEntries(lastRequest().url.searchParams)).toEqual({
      fromImage: 'nginx',
      tag: DIGEST,
      platform: 'linux/arm64/v8',
    });
  });

  it('fails a pull whose stream carries an error', async () => {
    const run = await cli(['pull', 'broken:1']);
    expect(run.code).toBe(1);
    expect(run.stdout).toBe('latest: Pulling from library/nginx\n');
    expect(run.stderr).toBe('unexpected EOF\n');
  });

  it('fails a pull the server refuses', async () => {
    const run = await cli(['pull', 'private/app:2']);
    expect(run.code).toBe(1);
    expect(run.stderr).toBe('Error response from daemon: registry docker.io is not allowed\n');
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
