import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { type Composition, composeEmbedded } from '../lib/composition.ts';
import { parseServeArgs } from '../lib/config.ts';
import type { HttpResponse } from '../lib/engine/http.ts';
import { createRouter, type Router } from '../lib/engine/router.ts';
import { toHttpApiResult, toHttpRequest } from '../lib/lambda/http-api-adapter.ts';
import { LAMBDA_RESPONSE_LIMIT } from '../lib/lambda/response-limits.ts';
import { lambdaRuntime } from '../lib/lambda/runtime.ts';

/** An HTTP API payload 2.0 event as API Gateway delivers it to the $default route. */
function httpApiEvent(
  method: string,
  rawPath: string,
  options: {
    rawQueryString?: string;
    headers?: Record<string, string>;
    cookies?: string[];
    body?: string;
    isBase64Encoded?: boolean;
  } = {},
): APIGatewayProxyEventV2 {
  const rawQueryString = options.rawQueryString ?? '';
  return {
    version: '2.0',
    routeKey: '$default',
    rawPath,
    rawQueryString,
    ...(options.cookies && { cookies: options.cookies }),
    headers: {
      'content-length': String(options.body?.length ?? 0),
      host: 'abc123.execute-api.eu-west-1.amazonaws.com',
      'user-agent': 'Docker-Client/28.0.1 (linux)',
      'x-amzn-trace-id': 'Root=1-6748a1b2-1234567890abcdef12345678',
      'x-forwarded-for': '203.0.113.7',
      'x-forwarded-port': '443',
      'x-forwarded-proto': 'https',
      ...options.headers,
    },
    ...(rawQueryString !== '' && {
      queryStringParameters: Object.fromEntries(
        [...new URLSearchParams(rawQueryString).keys()].map((key) => [
          key,
          new URLSearchParams(rawQueryString).getAll(key).join(','),
        ]),
      ),
    }),
    requestContext: {
      accountId: '123456789012',
      apiId: 'abc123',
      domainName: 'abc123.execute-api.eu-west-1.amazonaws.com',
      domainPrefix: 'abc123',
      http: {
        method,
        path: rawPath,
        protocol: 'HTTP/1.1',
        sourceIp: '203.0.113.7',
        userAgent: 'Docker-Client/28.0.1 (linux)',
      },
      requestId: 'BjB1ejWzliAEJ9w=',
      routeKey: '$default',
      stage: '$default',
      time: '29/Nov/2026:15:30:00 +0000',
      timeEpoch: 1_795_966_200_000,
    },
    ...(options.body !== undefined && { body: options.body }),
    isBase64Encoded: options.isBase64Encoded ?? false,
  };
}

async function readAll(stream: Readable | undefined): Promise<Buffer> {
  if (!stream) throw new Error('no body');
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

function bodyBytes(result: APIGatewayProxyStructuredResultV2): Buffer {
  return Buffer.from(result.body ?? '', result.isBase64Encoded ? 'base64' : 'utf8');
}

describe('toHttpRequest', () => {
  it('keeps repeated query keys in order (docker save a b)', () => {
    const request = toHttpRequest(
      httpApiEvent('GET', '/v1.47/images/get', { rawQueryString: 'names=a%3A1&names=b&names=c' }),
    );
    expect(request.method).toBe('GET');
    expect(request.path).toBe('/v1.47/images/get');
    expect(request.query.getAll('names')).toEqual(['a:1', 'b', 'c']);
  });

  it('passes the raw path through for the router to decode', () => {
    const request = toHttpRequest(
      httpApiEvent('POST', '/v1.47/images/localhost:5000/team/app:1/tag', {
        rawQueryString: 'repo=docker.io%2Fy%2Fz&tag=3',
      }),
    );
    expect(request.path).toBe('/v1.47/images/localhost:5000/team/app:1/tag');
    expect(request.query.get('repo')).toBe('docker.io/y/z');
    expect(request.query.get('tag')).toBe('3');
  });

  it('lowercases header names and leaves cookies out', () => {
    const request = toHttpRequest(
      httpApiEvent('GET', '/_ping', {
        headers: { Authorization: 'Bearer abc', 'X-Registry-Auth': 'e30=' },
        cookies: ['session=secret'],
      }),
    );
    expect(request.headers.authorization).toBe('Bearer abc');
    expect(request.headers['x-registry-auth']).toBe('e30=');
    expect(request.headers['user-agent']).toBe('Docker-Client/28.0.1 (linux)');
    expect(Object.keys(request.headers).every((name) => name === name.toLowerCase())).toBe(true);
    expect(request.headers.cookie).toBeUndefined();
    expect(request.body).toBeUndefined();
  });

  it('decodes a base64 body to its exact bytes and states their length', async () => {
    const bytes = Buffer.from([0, 1, 2, 255, 254, 0x1f, 0x8b, 10, 13]);
    const request = toHttpRequest(
      httpApiEvent('POST', '/v1.47/images/load', {
        rawQueryString: 'quiet=1',
        headers: { 'content-type': 'application/x-tar', 'content-length': '999' },
        body: bytes.toString('base64'),
        isBase64Encoded: true,
      }),
    );
    expect(request.headers['content-length']).toBe(String(bytes.length));
    expect(await readAll(request.body)).toEqual(bytes);
  });

  it('reads a text body as UTF-8', async () => {
    const text = '{"note":"café ☕"}';
    const request = toHttpRequest(
      httpApiEvent('POST', '/cache/pins', {
        headers: { 'content-type': 'application/json' },
        body: text,
      }),
    );
    expect((await readAll(request.body)).toString('utf8')).toBe(text);
    expect(request.headers['content-length']).toBe(String(Buffer.byteLength(text)));
  });

  it('takes the method from the request context', () => {
    expect(toHttpRequest(httpApiEvent('HEAD', '/_ping')).method).toBe('HEAD');
    expect(toHttpRequest(httpApiEvent('delete', '/images/x:1')).method).toBe('DELETE');
  });
});

describe('toHttpApiResult', () => {
  it('passes a string body and status through, dropping hop-by-hop headers', async () => {
    const result = await toHttpApiResult({
      status: 404,
      headers: { 'Content-Type': 'application/json', Connection: 'close', 'Content-Length': '3' },
      body: '{"message":"No such image: x:1"}\n',
    });
    expect(result).toEqual({
      statusCode: 404,
      headers: { 'Content-Type': 'application/json' },
      body: '{"message":"No such image: x:1"}\n',
      isBase64Encoded: false,
    });
  });

  it("keeps a body-less answer's Content-Length: a HEAD's, the length a GET would send", async () => {
    const result = await toHttpApiResult({
      status: 200,
      headers: { 'Content-Type': 'application/json', Connection: 'close', 'Content-Length': '736' },
    });
    expect(result).toEqual({
      statusCode: 200,
      headers: { 'Content-Type': 'application/json', 'Content-Length': '736' },
    });
  });

  it('sends binary bytes as base64', async () => {
    const bytes = Buffer.from([0x1f, 0x8b, 0, 255, 128, 10]);
    const result = await toHttpApiResult({
      status: 200,
      headers: { 'Content-Type': 'application/octet-stream' },
      body: new Uint8Array(bytes),
    });
    expect(result.isBase64Encoded).toBe(true);
    expect(bodyBytes(result)).toEqual(bytes);
  });

  it('buffers a streamed tarball into base64', async () => {
    const parts = [Buffer.alloc(1000, 1), Buffer.alloc(513, 2), Buffer.from([0, 255])];
    const result = await toHttpApiResult({
      status: 200,
      headers: { 'Content-Type': 'application/x-tar', 'Content-Length': '1515' },
      body: Readable.from(parts),
    });
    expect(result.statusCode).toBe(200);
    expect(result.isBase64Encoded).toBe(true);
    expect(bodyBytes(result)).toEqual(Buffer.concat(parts));
    expect(result.headers).toEqual({ 'Content-Type': 'application/x-tar' });
  });

  it('keeps streamed JSON progress lines as text', async () => {
    const lines = ['{"status":"Pulling from library/x"}\r\n', '{"status":"Digest: sha256:ab"}\r\n'];
    const result = await toHttpApiResult({
      status: 200,
      headers: { 'Content-Type': 'application/json' },
      body: Readable.from(lines),
    });
    expect(result.isBase64Encoded).toBe(false);
    expect(result.body).toBe(lines.join(''));
  });

  it('answers no body when the response has none', async () => {
    const result = await toHttpApiResult({ status: 204 });
    expect(result).toEqual({ statusCode: 204, headers: {} });
  });

  it('fits a binary body of exactly the room base64 leaves under 6 MB, and not a byte more', async () => {
    const room = LAMBDA_RESPONSE_LIMIT - 16 * 1024;
    const fits = Math.floor((room * 3) / 4);
    const binary = (size: number): HttpResponse => ({
      status: 200,
      headers: { 'Content-Type': 'application/x-tar' },
      body: Readable.from([Buffer.alloc(size, 7)]),
    });
    const ok = await toHttpApiResult(binary(fits));
    expect(ok.statusCode).toBe(200);
    expect(bodyBytes(ok).length).toBe(fits);
    expect(Buffer.byteLength(JSON.stringify(ok))).toBeLessThanOrEqual(LAMBDA_RESPONSE_LIMIT);

    const tooBig = await toHttpApiResult(binary(fits + 1));
    expect(tooBig.statusCode).toBe(413);
  });

  it('refuses a stream past the limit with a message naming the S3 fast path, and stops it', async () => {
    let produced = 0;
    const endless = new Readable({
      read() {
        produced += 1024;
        this.push(Buffer.alloc(1024));
      },
    });
    const result = await toHttpApiResult(
      { status: 200, headers: { 'Content-Type': 'application/x-tar' }, body: endless },
      { limit: 64 * 1024 },
    );
    expect(result.statusCode).toBe(413);
    const message = (JSON.parse(result.body ?? '{}') as { message: string }).message;
    expect(message).toMatch(/Lambda response/);
    expect(message).toMatch(/presigned/);
    expect(message).toMatch(/S3/);
    expect(endless.destroyed).toBe(true);
    expect(produced).toBeLessThan(128 * 1024);
  });

  it('refuses a declared Content-Length past the limit without reading the stream', async () => {
    let reads = 0;
    const body = new Readable({
      read() {
        reads += 1;
        this.push(null);
      },
    });
    const result = await toHttpApiResult({
      status: 200,
      headers: { 'Content-Type': 'application/x-tar', 'Content-Length': String(50 * 2 ** 20) },
      body,
    });
    expect(result.statusCode).toBe(413);
    expect(result.body).toMatch(/52428800 bytes/);
    // The docker CLI's way past 6 MB without a redirect: the streaming front door.
    expect(result.body).toMatch(/docker CLI saves up to 200 MB through the streaming endpoint/);
    expect(reads).toBe(0);
    expect(body.destroyed).toBe(true);
  });

  it('measures the serialized result, so JSON escaping cannot push a text body over', async () => {
    // Every quote becomes two characters in the serialized result.
    const quotes = '"'.repeat(40 * 1024);
    const result = await toHttpApiResult(
      { status: 200, headers: { 'Content-Type': 'text/plain' }, body: quotes },
      { limit: 64 * 1024 },
    );
    expect(result.statusCode).toBe(413);
  });

  it('turns a stream that fails midway into a 500 without internal details', async () => {
    const logged = vi.spyOn(console, 'error').mockImplementation(() => {});
    const failing = new Readable({
      read() {
        this.destroy(new Error('socket hang up at 10.0.0.12'));
      },
    });
    const result = await toHttpApiResult({
      status: 200,
      headers: { 'Content-Type': 'application/x-tar' },
      body: failing,
    });
    expect(result.statusCode).toBe(500);
    expect(result.body).not.toMatch(/10\.0\.0\.12/);
    // The detail goes to the log (CloudWatch), not to the client.
    expect(logged).toHaveBeenCalled();
    logged.mockRestore();
  });
});

describe('HTTP API events through the real router', () => {
  let dataDir: string;
  let composition: Composition;
  let router: Router;
  const handle = async (event: APIGatewayProxyEventV2) =>
    toHttpApiResult(await router(toHttpRequest(event)));

  beforeAll(() => {
    dataDir = mkdtempSync(join(tmpdir(), 'image-cache-lambda-'));
    composition = composeEmbedded(parseServeArgs(['--data', dataDir], {}));
    router = createRouter(composition.context);
  });
  afterAll(async () => {
    await composition.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('answers the docker CLI ping and version', async () => {
    const ping = await handle(httpApiEvent('HEAD', '/_ping'));
    expect(ping.statusCode).toBe(200);
    expect(ping.headers?.['Api-Version']).toBeDefined();

    const version = await handle(httpApiEvent('GET', '/v1.47/version'));
    expect(version.statusCode).toBe(200);
    expect(JSON.parse(version.body ?? '')).toMatchObject({ ApiVersion: expect.any(String) });
  });

  it('lists an empty cache and refuses an unknown image with Docker’s error shape', async () => {
    const list = await handle(
      httpApiEvent('GET', '/v1.47/images/json', { rawQueryString: 'all=1' }),
    );
    expect(list.statusCode).toBe(200);
    expect(JSON.parse(list.body ?? '')).toEqual([]);

    const missing = await handle(httpApiEvent('GET', '/v1.47/images/nope:1/json'));
    expect(missing.statusCode).toBe(404);
    expect(JSON.parse(missing.body ?? '')).toEqual({ message: expect.stringMatching(/nope/) });
  });

  it('hands a base64 tar body to docker load, which refuses a broken archive with a 4xx', async () => {
    const result = await handle(
      httpApiEvent('POST', '/v1.47/images/load', {
        rawQueryString: 'quiet=1',
        headers: { 'content-type': 'application/x-tar' },
        body: Buffer.alloc(1024, 0x41).toString('base64'),
        isBase64Encoded: true,
      }),
    );
    expect(result.statusCode).toBeGreaterThanOrEqual(400);
    expect(result.statusCode).toBeLessThan(500);
    expect(JSON.parse(result.body ?? '')).toEqual({ message: expect.any(String) });
  });
});

describe('lambdaRuntime', () => {
  it('refuses the embedded backend, then reads the environment again on the next invocation', async () => {
    await expect(lambdaRuntime({})).rejects.toThrow(/IMAGE_CACHE_BACKEND=aws/);
    // A failure is not cached: a fixed setting (or a transient error) is picked up next time.
    await expect(lambdaRuntime({ IMAGE_CACHE_BACKEND: 'aws' })).rejects.toThrow(
      /IMAGE_CACHE_BUCKET and IMAGE_CACHE_TABLE/,
    );
    await expect(
      lambdaRuntime({
        IMAGE_CACHE_BACKEND: 'aws',
        IMAGE_CACHE_BUCKET: 'Not_A_Bucket',
        IMAGE_CACHE_TABLE: 'catalog',
      }),
    ).rejects.toThrow(/not a valid S3 bucket name/);
  });
});
