import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import {
  type ApiGatewayLocal,
  type HttpApiHandler,
  startApiGatewayLocal,
} from './support/api-gateway-local.ts';

/**
 * The local API Gateway (test/support/api-gateway-local.ts) itself, with fake handlers: the
 * stand-in the Lambda front-door tests trust must deliver what the real HTTP API delivers and
 * refuse what it refuses.
 */
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
