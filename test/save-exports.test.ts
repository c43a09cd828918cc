import { readFile } from 'node:fs/promises';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CliContext } from '../lib/cli/context.ts';
import { ApiClient } from '../lib/cli/http.ts';
import { main } from '../lib/cli/main.ts';
import type { Router } from '../lib/engine/router.ts';
import { saveRedirectUrl, toHttpApiResult, toHttpRequest } from '../lib/lambda/http-api-adapter.ts';
import { type ApiGatewayLocal, startApiGatewayLocal } from './support/api-gateway-local.ts';
import { stopAwsEmulators } from './support/aws-emulators.ts';
import {
  type AwsSaveBackend,
  bodyBytes,
  getRequest,
  startAwsSaveBackend,
} from './support/aws-save-backend.ts';
import { startEngine } from './support/engine-harness.ts';
import { seedImage } from './support/seed-images.ts';
import { type TempDir, tempDir } from './support/tmp.ts';

/**
 * Save through S3: the AWS backend composed in-process on the emulators (fauxqs, DynamoDB
 * Local), driven through the router and through the local API Gateway with its 6 MB results.
 */
afterAll(async () => {
  await stopAwsEmulators();
});

const get = getRequest;

describe('save exports on the AWS backend', () => {
  let backend: AwsSaveBackend;
  let router: Router;
  let token: string;
  let writes: string[];
  let work: TempDir;

  beforeAll(async () => {
    backend = await startAwsSaveBackend();
    ({ router, token, writes } = backend);
    work = await tempDir('save-exports');
    const context = backend.composition.context;
    const now = Date.now();
    await seedImage(context, {
      name: 'small',
      layers: [['small-layer', 4096]],
      tags: [['docker.io/library/small', '1']],
      now,
    });
    // Past one 8 MiB part (multipart export) and past a 6 MB Lambda result.
    await seedImage(context, {
      name: 'big',
      layers: [
        ['big-layer-a', 6 * 1024 * 1024],
        ['big-layer-b', 4 * 1024 * 1024],
      ],
      tags: [['docker.io/library/big', '1']],
      now,
    });
  });

  afterAll(async () => {
    await backend?.close();
    await work?.cleanup();
  });

  const exportKeys = () => backend.exportKeys();
  const streamed = (names: string) => backend.streamedSave(names);

  it('exports once per content under exports/, reuses it, and the URL serves the streamed tar', async () => {
    const first = await router(get('/cache/exports', 'names=small:1', token));
    expect(first.status).toBe(200);
    const answer = JSON.parse(String(first.body));
    const tar = await streamed('small:1');
    expect(answer).toEqual({
      url: expect.any(String),
      size: tar.length,
      expires: expect.any(String),
    });
    expect(Date.parse(answer.expires)).toBeGreaterThan(Date.now());
    const keys = await exportKeys();
    expect(keys).toEqual([
      { key: expect.stringMatching(/^exports\/[a-f0-9]{64}\.tar$/), size: tar.length },
    ]);
    expect(writes).toEqual(['PutObjectCommand']);

    const downloaded = await fetch(answer.url);
    expect(downloaded.status).toBe(200);
    expect(Buffer.from(await downloaded.arrayBuffer()).equals(tar)).toBe(true);

    // The same images again (by another name that resolves the same: the same tags): no write.
    writes.length = 0;
    const second = await router(get('/cache/exports', 'names=docker.io/library/small:1', token));
    expect(second.status).toBe(200);
    expect(writes).toEqual([]);
    expect(await exportKeys()).toEqual(keys);
    const again = await fetch(JSON.parse(String(second.body)).url);
    expect(Buffer.from(await again.arrayBuffer()).equals(tar)).toBe(true);
  });

  it('answers a 307 to the export when the save asks for a redirect, by query or header', async () => {
    const byQuery = await router(get('/images/get', 'names=small:1&redirect=1', token));
    expect(byQuery.status).toBe(307);
    const location = byQuery.headers?.Location ?? '';
    expect(new URL(location).pathname).toMatch(/\/exports\/[a-f0-9]{64}\.tar$/);
    const byHeader = await router(
      get('/images/small:1/get', '', token, { 'x-image-cache-redirect': '1' }),
    );
    expect(byHeader.status).toBe(307);
    // Without either: the streamed tar, as the docker CLI gets it.
    const plain = await router(get('/images/small:1/get', '', token));
    expect(plain.status).toBe(200);
    await bodyBytes(plain);
    // An unknown name is a 404 before anything is exported.
    const unknown = await router(get('/images/get', 'names=nope:1&redirect=1', token));
    expect(unknown.status).toBe(404);
  });

  it('exports a multipart tarball and the CLI follows the redirect through the local API Gateway', async () => {
    const handler = async (event: Parameters<typeof toHttpRequest>[0]) => {
      const saveRedirect = saveRedirectUrl(event);
      return toHttpApiResult(
        await router(toHttpRequest(event)),
        saveRedirect ? { saveRedirect } : {},
      );
    };
    const gateway: ApiGatewayLocal = await startApiGatewayLocal({ handler });
    try {
      const tar = await streamed('big:1');
      expect(tar.length).toBeGreaterThan(8 * 1024 * 1024);

      // What the docker CLI gets: a 413 that names the real fast path.
      const refused = await fetch(`${gateway.url}/v1.47/images/get?names=big%3A1`, {
        headers: { authorization: `Bearer ${token}` },
      });
      expect(refused.status).toBe(413);
      const { message } = (await refused.json()) as { message: string };
      expect(message).toContain('curl -L');
      expect(message).toContain('/v1.47/images/get?names=big%3A1&redirect=1');
      expect(message).toContain('image-cache save');

      writes.length = 0;
      let stderr = '';
      const ctx: CliContext = {
        stdout: { write: () => true },
        stderr: { write: (text: string) => (stderr += text) },
        env: {},
        client: () => new ApiClient({ baseUrl: gateway.url, token }),
        now: () => Date.now(),
      };
      const out = join(work.path, 'big.tar');
      expect(await main(['save', '-o', out, 'big:1'], ctx)).toBe(0);
      expect(stderr).not.toMatch(/Error/);
      expect((await readFile(out)).equals(tar)).toBe(true);
      expect(gateway.invocations.at(-1)).toMatchObject({ status: 307, invoked: true });
      expect(writes).toContain('CreateMultipartUploadCommand');
      expect(writes).toContain('CompleteMultipartUploadCommand');

      // Saved again: the export is reused.
      writes.length = 0;
      const again = join(work.path, 'big-again.tar');
      expect(await main(['save', '-o', again, 'big:1'], ctx)).toBe(0);
      expect(writes).toEqual([]);
      expect((await readFile(again)).equals(tar)).toBe(true);
      expect(await exportKeys()).toHaveLength(2);
    } finally {
      await gateway.close();
    }
  });
});

describe('save exports elsewhere', () => {
  it('streams (200) on the embedded backend even when a redirect is asked for', async () => {
    const engine = await startEngine();
    try {
      await seedImage(engine.context, {
        name: 'app',
        layers: [['app-layer', 2048]],
        tags: [['docker.io/library/app', '1']],
        now: engine.clock.now(),
      });
      const request = (path: string, query: string) => ({
        method: 'GET',
        path,
        query: new URLSearchParams(query),
        headers: { 'x-image-cache-redirect': '1' },
      });
      const response = await engine.router(request('/images/get', 'names=app:1&redirect=1'));
      expect(response.status).toBe(200);
      expect(response.headers?.['Content-Type']).toBe('application/x-tar');
      expect((await bodyBytes(response)).length).toBe(Number(response.headers?.['Content-Length']));
      const exports = await engine.router(request('/cache/exports', 'names=app:1'));
      expect(exports.status).toBe(404);
    } finally {
      await engine.close();
    }
  });

  it('the CLI client does not send its token on to a redirect target of another origin', async () => {
    let seen: IncomingHttpHeaders | undefined;
    const storage = createServer((req, res) => {
      seen = req.headers;
      res.writeHead(200, { 'content-type': 'application/x-tar', 'content-length': '3' });
      res.end('tar');
    }).listen(0, '127.0.0.1');
    await new Promise((resolve) => storage.once('listening', resolve));
    const storagePort = (storage.address() as AddressInfo).port;
    let asked: IncomingHttpHeaders | undefined;
    const api = createServer((req, res) => {
      asked = req.headers;
      res.writeHead(307, { location: `http://127.0.0.1:${storagePort}/exports/x.tar?sig=1` });
      res.end();
    }).listen(0, '127.0.0.1');
    await new Promise((resolve) => api.once('listening', resolve));
    try {
      const client = new ApiClient({
        baseUrl: `http://127.0.0.1:${(api.address() as AddressInfo).port}`,
        token: 'ic_secret',
      });
      const response = await client.request('/images/get', {
        query: { names: 'a', redirect: '1' },
      });
      expect(await response.text()).toBe('tar');
      expect(asked?.authorization).toBe('Bearer ic_secret');
      expect(seen).toBeDefined();
      expect(seen?.authorization).toBeUndefined();
    } finally {
      api.close();
      storage.close();
    }
  });
});
