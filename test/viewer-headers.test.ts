/**
 * The viewer's Authorization and Host across CloudFront: the distribution's viewer-request
 * function (infra/viewer-request-function.ts, run here in Node as CloudFront runs it) copies them,
 * origin access control then replaces Authorization with its SigV4 signature and Host with the
 * function URL's, and lib/lambda/viewer-headers.ts puts the viewer's back. The result goes to the
 * real router on the embedded backend with access control on.
 */
import { runInNewContext } from 'node:vm';
import type { APIGatewayProxyEventV2 } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { viewerRequestCode } from '../infra/viewer-request-function.ts';
import { createToken } from '../lib/auth/tokens.ts';
import { saveRedirectUrl, toHttpRequest } from '../lib/lambda/http-api-adapter.ts';
import { restoreViewerHeaders, VIEWER_HEADERS } from '../lib/lambda/viewer-headers.ts';
import { type EngineHarness, startEngine } from './support/engine-harness.ts';

type CloudFrontHeaders = Record<string, { value: string }>;
interface CloudFrontRequest {
  method: string;
  uri: string;
  headers: CloudFrontHeaders;
}

/** The CloudFront Function's handler on a viewer request, in a context of its own. */
function viewerRequest(request: CloudFrontRequest): CloudFrontRequest {
  const handler = runInNewContext(`${viewerRequestCode()}\nhandler`) as (event: {
    request: CloudFrontRequest;
  }) => CloudFrontRequest;
  return handler({ request: structuredClone(request) });
}

const URL_HOST = 'abcdefghijklmnop.lambda-url.eu-west-1.on.aws';
const SIGV4 =
  'AWS4-HMAC-SHA256 Credential=ASIA.../20261205/eu-west-1/lambda/aws4_request, SignedHeaders=host;x-amz-date, Signature=0f';

/**
 * The origin request as the function URL turns it into an event: the function's headers with
 * OAC's signature for Authorization, the URL's host, and CloudFront's request id.
 */
function originEvent(
  method: string,
  path: string,
  viewer: CloudFrontRequest,
): APIGatewayProxyEventV2 {
  const headers: Record<string, string> = {};
  for (const [name, { value }] of Object.entries(viewer.headers)) headers[name] = value;
  Object.assign(headers, {
    authorization: SIGV4,
    host: URL_HOST,
    'x-amz-cf-id': 'cf-request-id',
    'x-amz-date': '20261205T150000Z',
  });
  return {
    version: '2.0',
    routeKey: '$default',
    rawPath: path,
    rawQueryString: 'names=alpine%3A3',
    headers,
    requestContext: {
      accountId: 'anonymous',
      apiId: 'abcdefghijklmnop',
      domainName: URL_HOST,
      domainPrefix: 'abcdefghijklmnop',
      http: {
        method,
        path,
        protocol: 'HTTP/1.1',
        sourceIp: '15.158.0.1',
        userAgent: 'Amazon CloudFront',
      },
      requestId: 'req-1',
      routeKey: '$default',
      stage: '$default',
      time: new Date().toISOString(),
      timeEpoch: Date.now(),
    },
    isBase64Encoded: false,
  };
}

describe('the viewer-request CloudFront Function', () => {
  it('copies Authorization and Host into the headers the function restores', () => {
    const out = viewerRequest({
      method: 'GET',
      uri: '/images/json',
      headers: {
        authorization: { value: 'Bearer ic_token' },
        host: { value: 'images.example.com' },
        'user-agent': { value: 'Docker-Client/28.0.1 (linux)' },
      },
    });
    expect(out.headers).toEqual({
      authorization: { value: 'Bearer ic_token' },
      host: { value: 'images.example.com' },
      'user-agent': { value: 'Docker-Client/28.0.1 (linux)' },
      [VIEWER_HEADERS.authorization]: { value: 'Bearer ic_token' },
      [VIEWER_HEADERS.host]: { value: 'images.example.com' },
    });
    expect(out.uri).toBe('/images/json');
  });

  it('drops copies a client sent itself: without Authorization, the origin sees none', () => {
    const out = viewerRequest({
      method: 'GET',
      uri: '/images/json',
      headers: {
        host: { value: 'images.example.com' },
        [VIEWER_HEADERS.authorization]: { value: 'Bearer ic_forged' },
        [VIEWER_HEADERS.host]: { value: 'evil.example' },
      },
    });
    expect(out.headers[VIEWER_HEADERS.authorization]).toBeUndefined();
    expect(out.headers[VIEWER_HEADERS.host]).toEqual({ value: 'images.example.com' });
  });
});

describe('restoreViewerHeaders', () => {
  let engine: EngineHarness;
  let token: string;

  beforeAll(async () => {
    engine = await startEngine(['--require-auth']);
    token = (await createToken(engine.context.tokens, { scope: 'read' }, engine.clock.now())).token;
  });
  afterAll(() => engine?.close());

  const viewer = (headers: CloudFrontHeaders) =>
    viewerRequest({ method: 'GET', uri: '/images/json', headers });

  it('gives the router the viewer token through CloudFront, not the SigV4 signature', async () => {
    const received = originEvent(
      'GET',
      '/images/json',
      viewer({
        authorization: { value: `Bearer ${token}` },
        host: { value: 'images.example.com' },
      }),
    );
    // As it arrives, the router sees OAC's signature and refuses it.
    expect((await engine.router(toHttpRequest(received))).status).toBe(401);
    const event = restoreViewerHeaders(received);
    expect(event.headers.authorization).toBe(`Bearer ${token}`);
    expect(event.headers.host).toBe('images.example.com');
    expect(event.headers[VIEWER_HEADERS.authorization]).toBeUndefined();
    expect(event.headers[VIEWER_HEADERS.host]).toBeUndefined();
    expect((await engine.router(toHttpRequest(event))).status).toBe(200);
  });

  it('names the viewer host in the save redirect, not the function URL', () => {
    const event = restoreViewerHeaders(
      originEvent('GET', '/images/get', viewer({ host: { value: 'images.example.com' } })),
    );
    expect(saveRedirectUrl(event)).toBe(
      'https://images.example.com/images/get?names=alpine%3A3&redirect=1',
    );
  });

  it('answers "authentication required" when the viewer sent no token', async () => {
    const event = restoreViewerHeaders(
      originEvent('GET', '/images/json', viewer({ host: { value: 'images.example.com' } })),
    );
    expect(event.headers.authorization).toBeUndefined();
    const answer = await engine.router(toHttpRequest(event));
    expect(answer.status).toBe(401);
    expect(String(answer.body)).toContain('authentication required');
  });

  it('leaves a request that did not come through CloudFront as it is', () => {
    const direct = originEvent('GET', '/images/json', viewer({ host: { value: 'x.example' } }));
    delete direct.headers['x-amz-cf-id'];
    direct.headers.authorization = `Bearer ${token}`;
    expect(restoreViewerHeaders(direct)).toBe(direct);
  });
});
