/**
 * Who asked, in the function's own request log: the router hands the checked token's id and name
 * back with its answer (both doors, failures after the check included), and the log line carries
 * them, never the token or its hash. Driven through the real router on the embedded backend with
 * access control on, from payload 2.0 events as the fronts receive them.
 */
import { Writable } from 'node:stream';
import type { APIGatewayProxyEventV2 } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createToken, type NewToken } from '../lib/auth/tokens.ts';
import type { HttpResponse } from '../lib/engine/http.ts';
import { toHttpApiResult, toHttpRequest } from '../lib/lambda/http-api-adapter.ts';
import {
  type FrontDoor,
  logRequest,
  requestEntry,
  requestLogLine,
} from '../lib/lambda/request-log.ts';
import { sendStreamed } from '../lib/lambda/stream-adapter.ts';
import { type EngineHarness, startEngine } from './support/engine-harness.ts';

let engine: EngineHarness;
let reader: NewToken;
let admin: NewToken;

beforeAll(async () => {
  engine = await startEngine(['--require-auth']);
  const now = engine.clock.now();
  reader = await createToken(engine.context.tokens, { scope: 'read', name: 'ci-reader' }, now);
  admin = await createToken(engine.context.tokens, { scope: 'admin', name: 'ops' }, now);
});

afterAll(() => engine?.close());

function event(method: string, rawPath: string, token?: string): APIGatewayProxyEventV2 {
  return {
    version: '2.0',
    routeKey: '$default',
    rawPath,
    rawQueryString: '',
    headers: {
      host: 'cache.example.com',
      ...(token !== undefined && { authorization: `Bearer ${token}` }),
    },
    requestContext: {
      accountId: '123456789012',
      apiId: 'abc123',
      domainName: 'cache.example.com',
      domainPrefix: 'cache',
      http: { method, path: rawPath, protocol: 'HTTP/1.1', sourceIp: '203.0.113.7', userAgent: '' },
      requestId: `req-${method}-${rawPath}`,
      routeKey: '$default',
      stage: '$default',
      time: new Date().toISOString(),
      timeEpoch: Date.now(),
    },
    isBase64Encoded: false,
  };
}

const ask = (e: APIGatewayProxyEventV2): Promise<HttpResponse> => engine.router(toHttpRequest(e));

describe('the router names the caller', () => {
  it('on the Engine API: the token that passed the check, also when the route then fails', async () => {
    const listed = await ask(event('GET', '/v1.47/images/json', reader.token));
    expect(listed.status).toBe(200);
    expect(listed.caller).toEqual({ tokenId: reader.record.id, tokenName: 'ci-reader' });
    const missing = await ask(event('GET', '/images/nothing:1/json', admin.token));
    expect(missing.status).toBe(404);
    expect(missing.caller).toEqual({ tokenId: admin.record.id, tokenName: 'ops' });
  });

  it('on the registry door', async () => {
    const base = await ask(event('GET', '/v2/', reader.token));
    expect(base.status).toBe(200);
    expect(base.caller).toEqual({ tokenId: reader.record.id, tokenName: 'ci-reader' });
    // docker.io is not allow-listed here: refused after the token check.
    const unknown = await ask(event('GET', '/v2/library/none/manifests/1', reader.token));
    expect(unknown.status).toBe(403);
    expect(unknown.caller?.tokenId).toBe(reader.record.id);
  });

  it('nobody for open endpoints, a missing or unknown token, or one refused for its scope', async () => {
    const cases: [string, string, string | undefined, number][] = [
      ['GET', '/_ping', undefined, 200],
      ['GET', '/images/json', undefined, 401],
      ['GET', '/images/json', `ic_${'x'.repeat(43)}`, 401],
      ['DELETE', '/images/alpine:1', reader.token, 403],
    ];
    for (const [method, path, token, status] of cases) {
      const answer = await ask(event(method, path, token));
      expect([method, path, answer.status]).toEqual([method, path, status]);
      expect(answer.caller).toBeUndefined();
    }
  });
});

describe('the request log line', () => {
  /** What each front logs for one request, as functions/api.ts and api-stream.ts do. */
  async function logged(front: FrontDoor, e: APIGatewayProxyEventV2): Promise<string[]> {
    const lines: string[] = [];
    const startedAt = Date.now();
    let answer: Pick<HttpResponse, 'status' | 'caller'>;
    if (front === 'http-api') {
      const response = await ask(e);
      const result = await toHttpApiResult(response);
      answer = { status: result.statusCode ?? 200, caller: response.caller };
    } else {
      const sink = new Writable({ write: (_chunk, _encoding, done) => done() });
      answer = await sendStreamed(sink, () => ask(e));
    }
    logRequest(requestEntry(e, front, answer, startedAt), (line) => lines.push(line));
    return lines;
  }

  for (const front of ['http-api', 'function-url'] as const) {
    it(`${front}: one JSON line with the request id, status and the token's id and name, never the token`, async () => {
      const e = event('GET', '/v1.47/images/json', reader.token);
      const lines = await logged(front, e);
      expect(lines).toHaveLength(1);
      const line = lines[0]!;
      expect(JSON.parse(line)).toEqual({
        log: 'request',
        front,
        requestId: e.requestContext.requestId,
        method: 'GET',
        path: '/v1.47/images/json',
        status: 200,
        latencyMs: expect.any(Number),
        tokenId: reader.record.id,
        tokenName: 'ci-reader',
      });
      expect(line).not.toContain(reader.token);
      expect(line).not.toContain(reader.record.hash);
    });
  }

  it('a refused request: its status and no token fields', async () => {
    const lines = await logged('function-url', event('GET', '/images/json', 'not-a-token'));
    const fields = JSON.parse(lines[0]!) as Record<string, unknown>;
    expect(fields.status).toBe(401);
    expect(fields).not.toHaveProperty('tokenId');
    expect(fields).not.toHaveProperty('tokenName');
    expect(lines[0]).not.toContain('not-a-token');
  });

  it('keeps the query out of the path', () => {
    const e = { ...event('POST', '/images/create'), rawQueryString: 'fromImage=alpine&tag=3' };
    const line = requestLogLine(requestEntry(e, 'http-api', { status: 200 }, 0, 5));
    expect(JSON.parse(line)).toMatchObject({ path: '/images/create', latencyMs: 5 });
    expect(line).not.toContain('fromImage');
  });
});
