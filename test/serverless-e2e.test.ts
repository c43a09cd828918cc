import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CliContext } from '../lib/cli/context.ts';
import { ApiClient } from '../lib/cli/http.ts';
import { main } from '../lib/cli/main.ts';
import { digestHex } from '../lib/digest.ts';
import { systemClock } from '../lib/ports/clock.ts';
import { prepareSave } from '../lib/save/save.ts';
import {
  type ApiGatewayLocal,
  type HttpApiHandler,
  startApiGatewayLocal,
} from './support/api-gateway-local.ts';
import { type GeneratedImage, generateImage } from './support/image-factory.ts';
import { pushImage } from './support/push.ts';
import { readTar } from './support/save-fixtures.ts';
import {
  type ServerlessStack,
  startServerlessStack,
  stopServerlessProcess,
} from './support/serverless-stack.ts';

/**
 * The deployed shape without AWS: functions/api.ts (bundled by the stack as the Api function)
 * behind a local API Gateway HTTP API (payload 2.0 events, 10 MB requests, 30 s timeout,
 * buffered 6 MB results), with the AWS backend on DynamoDB Local and fauxqs and a real
 * docker-registry as docker.io (test/support/serverless-stack.ts). The judge is the real docker
 * CLI with DOCKER_HOST pointing at the gateway, sending a bearer token through config.json's
 * HttpHeaders (the function always requires tokens); the project's CLI saves past the 6 MB
 * result through the S3 redirect.
 */
afterAll(stopServerlessProcess);

describe('serverless: docker CLI -> API Gateway (local) -> api Lambda -> S3 + DynamoDB', () => {
  let stack: ServerlessStack;
  let gateway: ApiGatewayLocal;
  let small: GeneratedImage;
  let big: GeneratedImage;
  let adapters: ServerlessStack['adapters'];
  let work: ServerlessStack['work'];
  let tokens: ServerlessStack['tokens'];

  beforeAll(async () => {
    stack = await startServerlessStack('serverless-e2e');
    ({ adapters, work, tokens } = stack);
    small = await generateImage({ seed: 'sls-small', format: 'docker', layers: 2 });
    // Incompressible: its save (about 6.3 MB) is past what a buffered Lambda result carries.
    big = await generateImage({
      seed: 'sls-big',
      format: 'oci',
      layers: [{ files: [6 * 1024 * 1024] }],
    });
    const { url } = stack.registry;
    await pushImage({ url, repository: 'library/small' }, small, { tags: ['1'] });
    await pushImage({ url, repository: 'library/big' }, big, { tags: ['1'] });
    const { handler } = (await import('../functions/api.ts')) as { handler: HttpApiHandler };
    gateway = await startApiGatewayLocal({ handler });
  });

  afterAll(async () => {
    await gateway?.close();
    await stack?.close();
  });

  const cli = (args: string[], token?: string) => stack.docker(gateway.hostPort, args, token);
  const lastInvocation = () => gateway.invocations.at(-1)!;

  it('pulls through the gateway into S3 and DynamoDB', async () => {
    const result = await cli(['pull', 'small:1']);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toContain(`Digest: ${small.digest}`);
    expect(result.stdout).toContain('Status: Downloaded newer image for small:1');
    // Every request went through the handler as a payload 2.0 event.
    expect(gateway.invocations.some((i) => i.rawPath.endsWith('/images/create'))).toBe(true);
    expect(gateway.invocations.every((i) => i.invoked)).toBe(true);

    const stored = new Map<string, number>();
    for await (const blob of adapters.blobs.list()) stored.set(digestHex(blob.digest), blob.size);
    for (const blob of small.blobs) expect(stored.get(digestHex(blob.digest))).toBe(blob.size);
    expect((await adapters.catalog.listManifests()).map((m) => m.digest)).toContain(small.digest);
  });

  it('lists and inspects', async () => {
    const ls = await cli(['image', 'ls', '--format', '{{.Repository}}:{{.Tag}} {{.ID}}']);
    expect(ls.code).toBe(0);
    expect(ls.stdout.trim().split('\n')).toEqual([
      `small:1 ${digestHex(small.configBlob.digest).slice(0, 12)}`,
    ]);
    const inspect = await cli(['image', 'inspect', 'small:1']);
    expect(inspect.code).toBe(0);
    const [image] = JSON.parse(inspect.stdout);
    expect(image.Id).toBe(small.configBlob.digest);
    expect(image.RepoTags).toEqual(['small:1']);
    expect(image.RepoDigests).toEqual([`small@${small.digest}`]);
    expect(image.RootFS.Layers).toEqual(small.config.rootfs.diff_ids);
    expect(image.Size).toBe(small.fileBytes);
  });

  it('refuses a request without a token (401) and a read token deleting (403), changing nothing', async () => {
    const anonymous = await cli(['image', 'ls'], '');
    expect(anonymous.code).not.toBe(0);
    expect(anonymous.stderr).toMatch(/authentication required/);
    expect(lastInvocation()).toMatchObject({ status: 401, invoked: true });
    const before = await adapters.catalog.listManifests();
    const reader = await cli(['image', 'rm', 'small:1'], tokens.read);
    expect(reader.code).not.toBe(0);
    expect(reader.stderr).toMatch(/needs scope write/);
    expect(lastInvocation()).toMatchObject({ status: 403 });
    expect(await adapters.catalog.listManifests()).toEqual(before);
    const still = await cli(['image', 'inspect', '--format', '{{.Id}}', 'small:1'], tokens.read);
    expect(still.stdout.trim()).toBe(small.configBlob.digest);
  });

  it('saves a small image with docker save -o: a tarball with manifest.json', async () => {
    const out = join(work.path, 'small.tar');
    const result = await cli(['save', '-o', out, 'small:1']);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(lastInvocation()).toMatchObject({ rawPath: expect.stringMatching(/\/images\/get$/) });
    const members = await readTar(await readFile(out));
    const manifest = JSON.parse(members.find((m) => m.name === 'manifest.json')!.data.toString());
    expect(manifest).toEqual([
      expect.objectContaining({
        Config: `blobs/sha256/${digestHex(small.configBlob.digest)}`,
        RepoTags: ['small:1'],
      }),
    ]);
    const saved = new Set(members.map((m) => m.name));
    for (const layer of small.layers)
      expect(saved).toContain(`blobs/sha256/${digestHex(layer.digest)}`);
  });

  it('answers a save past the Lambda response limit with a 413 naming the fast path', async () => {
    expect((await cli(['pull', 'big:1'])).code).toBe(0);
    const out = join(work.path, 'big.tar');
    const result = await cli(['save', '-o', out, 'big:1']);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(/Lambda response/);
    expect(result.stderr).toMatch(/presigned download/);
    expect(result.stderr).toContain('/images/get?names=big%3A1&redirect=1');
    expect(result.stderr).toContain('image-cache save');
    expect(lastInvocation()).toMatchObject({ status: 413, invoked: true });
  });

  it('saves the big image with the project CLI through the presigned S3 redirect', async () => {
    const out = join(work.path, 'big-cli.tar');
    let stderr = '';
    const ctx: CliContext = {
      stdout: { write: () => true },
      stderr: { write: (text: string) => (stderr += text) },
      env: {},
      client: () => new ApiClient({ baseUrl: gateway.url, token: tokens.read }),
      now: () => Date.now(),
    };
    expect(await main(['save', '-o', out, 'big:1'], ctx)).toBe(0);
    expect(stderr).not.toMatch(/Error/);
    expect(lastInvocation()).toMatchObject({ status: 307, invoked: true });
    const tarball = await prepareSave({ ...adapters, clock: systemClock }, ['big:1']);
    const chunks: Buffer[] = [];
    for await (const chunk of tarball.open()) chunks.push(chunk as Buffer);
    expect((await readFile(out)).equals(Buffer.concat(chunks))).toBe(true);
  });

  it('answers a load body over 10 MB with the gateway 413, without invoking the function', async () => {
    const archive = join(work.path, 'too-big.tar');
    await writeFile(archive, randomBytes(10 * 1024 * 1024 + 4096));
    const before = await adapters.catalog.listManifests();
    const result = await cli(['load', '-i', archive]);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(/Request Entity Too Large/);
    expect(lastInvocation()).toMatchObject({ status: 413, invoked: false });
    expect(await adapters.catalog.listManifests()).toEqual(before);
  });

  it('prunes every image with docker image prune -a -f, blobs included', async () => {
    const result = await cli(['image', 'prune', '-a', '-f']);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toContain(`deleted: ${small.configBlob.digest}`);
    expect(result.stdout).toContain(`deleted: ${big.configBlob.digest}`);
    expect(result.stdout).toMatch(/Total reclaimed space: \S+/);
    const ls = await cli(['image', 'ls', '-q']);
    expect(ls.stdout.trim()).toBe('');
    expect(await adapters.catalog.listManifests()).toEqual([]);
    const left: string[] = [];
    for await (const blob of adapters.blobs.list()) left.push(blob.digest);
    expect(left).toEqual([]);
  });
});

describe('the local API Gateway itself (fake handlers)', () => {
  const started: ApiGatewayLocal[] = [];
  afterAll(async () => {
    await Promise.all(started.map((g) => g.close()));
  });
  const gatewayFor = async (
    handler: HttpApiHandler,
    limits: { payloadLimit?: number; timeoutMs?: number } = {},
  ) => {
    const gateway = await startApiGatewayLocal({ handler, ...limits });
    started.push(gateway);
    return gateway;
  };

  it('delivers a payload 2.0 event: raw path and query, lowercased headers, base64 binary body', async () => {
    let seen: Parameters<HttpApiHandler>[0] | undefined;
    const gateway = await gatewayFor(async (event) => {
      seen = event;
      return {
        statusCode: 201,
        headers: { 'Content-Type': 'application/octet-stream' },
        body: Buffer.from([0, 1, 2, 255]).toString('base64'),
        isBase64Encoded: true,
        cookies: ['ignored=1'],
      };
    });
    const response = await fetch(`${gateway.url}/v1.47/images/get?names=a%3A1&names=b`, {
      method: 'POST',
      headers: { 'X-Registry-Auth': 'e30=', 'Content-Type': 'application/x-tar' },
      body: Buffer.from([0xff, 0xfe, 0x00]),
    });
    expect(response.status).toBe(201);
    expect(response.headers.get('set-cookie')).toBeNull();
    expect(Buffer.from(await response.arrayBuffer())).toEqual(Buffer.from([0, 1, 2, 255]));
    expect(seen).toMatchObject({
      version: '2.0',
      routeKey: '$default',
      rawPath: '/v1.47/images/get',
      rawQueryString: 'names=a%3A1&names=b',
      queryStringParameters: { names: 'a:1,b' },
      isBase64Encoded: true,
      body: Buffer.from([0xff, 0xfe, 0x00]).toString('base64'),
      requestContext: { http: { method: 'POST', path: '/v1.47/images/get' }, stage: '$default' },
    });
    expect(seen!.headers['x-registry-auth']).toBe('e30=');
    expect(seen!.headers['content-length']).toBe('3');
  });

  it('answers 413 for a chunked body past the payload limit, without invoking the handler', async () => {
    let calls = 0;
    const gateway = await gatewayFor(
      async () => {
        calls++;
        return { statusCode: 200 };
      },
      { payloadLimit: 1024 },
    );
    // A stream body: fetch sends it chunked, with no content-length to refuse it up front.
    let sent = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent++ < 8) controller.enqueue(randomBytes(512));
        else controller.close();
      },
    });
    const response = await fetch(`${gateway.url}/images/load`, {
      method: 'POST',
      body,
      duplex: 'half',
    } as RequestInit);
    expect(response.status).toBe(413);
    expect(await response.json()).toEqual({ message: 'Request Entity Too Large' });
    expect(calls).toBe(0);
  });

  it("answers 413 for a body under 10 MB whose base64 event is past Lambda's 6 MB, without invoking", async () => {
    let calls = 0;
    const gateway = await gatewayFor(async () => {
      calls++;
      return { statusCode: 200 };
    });
    // 4.8 MB of binary is 6.4 MB once base64-encoded into the event.
    const refused = await fetch(`${gateway.url}/images/load`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-tar' },
      body: randomBytes(4_800_000),
    });
    expect(refused.status).toBe(413);
    expect(await refused.json()).toEqual({ message: 'Request Too Long' });
    expect(calls).toBe(0);
    // 4.6 MB (6.13 MB of base64) still fits.
    const accepted = await fetch(`${gateway.url}/images/load`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-tar' },
      body: randomBytes(4_600_000),
    });
    expect(accepted.status).toBe(200);
    expect(calls).toBe(1);
  });

  it('answers 503 when the integration takes longer than the timeout', async () => {
    const gateway = await gatewayFor(
      () => new Promise((resolve) => setTimeout(() => resolve({ statusCode: 200 }), 1000)),
      { timeoutMs: 100 },
    );
    const response = await fetch(`${gateway.url}/_ping`);
    expect(response.status).toBe(503);
    expect(await response.json()).toEqual({ message: 'Service Unavailable' });
  });

  // As the stand-in models API Gateway: a result past 6 MB fails the invocation itself (502),
  // while a handler that throws is a function error the HTTP API maps to 500.
  it('answers 502 for a result past the Lambda limit and 500 for a handler that throws', async () => {
    const huge = await gatewayFor(async () => ({ statusCode: 200, body: 'x'.repeat(7 * 2 ** 20) }));
    const tooBig = await fetch(`${huge.url}/images/get`);
    expect(tooBig.status).toBe(502);
    expect(await tooBig.json()).toEqual({ message: 'Internal Server Error' });
    const failing = await gatewayFor(async () => {
      throw new Error('boom');
    });
    const failed = await fetch(`${failing.url}/_ping`);
    expect(failed.status).toBe(500);
    expect(await failed.json()).toEqual({ message: 'Internal Server Error' });
  });
});
