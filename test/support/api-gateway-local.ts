/**
 * A local stand-in for an API Gateway HTTP API ($default route, Lambda proxy integration,
 * payload format 2.0) in front of a handler running in this process: each HTTP request on
 * 127.0.0.1 becomes the event API Gateway would deliver, and the handler's structured result
 * becomes the HTTP answer. It enforces what the real front door enforces, with its own bodies:
 *   - request payloads over 10 MB: 413 {"message":"Request Entity Too Large"}, the handler is
 *     never invoked (the body is not even read past the limit);
 *   - the 30 s integration timeout: 503 {"message":"Service Unavailable"};
 *   - a serialized result over Lambda's 6 MB: 502 {"message":"Internal Server Error"} (the
 *     invocation fails), and a handler that throws: 500 with the same body.
 * Responses are buffered, as with a non-streaming Lambda: nothing reaches the client before
 * the handler returns.
 *
 * The handler is imported by the caller after the function's environment is in process.env
 * (lib/lambda/runtime.ts reads it on the first invocation), so one process is one container.
 */
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { APIGatewayProxyEventV2, APIGatewayProxyResultV2 } from 'aws-lambda';

export type HttpApiHandler = (event: APIGatewayProxyEventV2) => Promise<APIGatewayProxyResultV2>;

/** HTTP API quotas: https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-quotas.html */
export const API_GATEWAY_PAYLOAD_LIMIT = 10 * 1024 * 1024;
export const API_GATEWAY_TIMEOUT_MS = 30_000;
/** A buffered (RequestResponse) Lambda invocation's result, serialized. */
export const LAMBDA_RESULT_LIMIT = 6 * 1024 * 1024;

export interface ApiGatewayLocalOptions {
  handler: HttpApiHandler;
  /** Lowered by tests that exercise the limits cheaply. */
  payloadLimit?: number;
  timeoutMs?: number;
  resultLimit?: number;
}

export interface InvocationRecord {
  method: string;
  rawPath: string;
  rawQueryString: string;
  /** The status the client received (a gateway answer or the handler's). */
  status: number;
  /** False when the gateway answered on its own (payload too large). */
  invoked: boolean;
  ms: number;
}

export interface ApiGatewayLocal {
  url: string;
  /** `127.0.0.1:<port>`, for DOCKER_HOST=tcp://... */
  hostPort: string;
  port: number;
  /** Every request answered so far, in order. */
  readonly invocations: InvocationRecord[];
  close(): Promise<void>;
}

const API_ID = 'local0api1';
const DOMAIN = `${API_ID}.execute-api.us-east-1.amazonaws.com`;

/** What API Gateway treats as text in payload 2.0; any other body arrives base64-encoded. */
const TEXT_BODY =
  /^(text\/|application\/(json|javascript|xml|x-www-form-urlencoded)\b|[^;]*\+(json|xml)\b)/i;

export async function startApiGatewayLocal(
  options: ApiGatewayLocalOptions,
): Promise<ApiGatewayLocal> {
  const payloadLimit = options.payloadLimit ?? API_GATEWAY_PAYLOAD_LIMIT;
  const timeoutMs = options.timeoutMs ?? API_GATEWAY_TIMEOUT_MS;
  const resultLimit = options.resultLimit ?? LAMBDA_RESULT_LIMIT;
  const invocations: InvocationRecord[] = [];

  const server = createServer((req, res) => {
    const started = performance.now();
    const url = new URL(req.url ?? '/', 'http://localhost');
    const record: InvocationRecord = {
      method: req.method ?? 'GET',
      rawPath: url.pathname,
      rawQueryString: url.search.slice(1),
      status: 0,
      invoked: false,
      ms: 0,
    };
    const answer = (status: number, headers: Record<string, string>, body: Buffer) => {
      record.status = status;
      record.ms = performance.now() - started;
      invocations.push(record);
      writeAnswer(res, status, headers, body);
    };
    serve(req, record, answer).catch((error: unknown) => {
      console.error('api-gateway-local:', error);
      if (!res.headersSent) answer(...gatewayMessage(500, 'Internal Server Error'));
      else res.destroy();
    });
  });

  async function serve(
    req: IncomingMessage,
    record: InvocationRecord,
    answer: (status: number, headers: Record<string, string>, body: Buffer) => void,
  ): Promise<void> {
    const declared = Number(req.headers['content-length']);
    if (Number.isFinite(declared) && declared > payloadLimit) {
      answer(...tooLarge(req));
      return;
    }
    const body = await readBody(req, payloadLimit);
    if (body === 'too-large') {
      answer(...tooLarge(req));
      return;
    }
    const event = toEvent(req, record, body);
    record.invoked = true;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), timeoutMs);
    });
    let result: APIGatewayProxyResultV2 | 'timeout';
    try {
      // The handler keeps running after a timeout (as a Lambda does until its own timeout);
      // only the client stops waiting.
      result = await Promise.race([options.handler(event), timedOut]);
    } catch (error) {
      console.error('api-gateway-local: the handler threw', error);
      answer(...gatewayMessage(500, 'Internal Server Error'));
      return;
    } finally {
      clearTimeout(timer);
    }
    if (result === 'timeout') {
      answer(...gatewayMessage(503, 'Service Unavailable'));
      return;
    }
    const serialized = JSON.stringify(result) ?? '';
    if (Buffer.byteLength(serialized) > resultLimit) {
      // Lambda refuses the result (Function.ResponseSizeTooLarge); API Gateway sees a failure.
      answer(...gatewayMessage(502, 'Internal Server Error'));
      return;
    }
    answer(...fromResult(result));
  }

  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    hostPort: `127.0.0.1:${port}`,
    port,
    invocations,
    close: async () => {
      server.closeAllConnections();
      server.close();
      await once(server, 'close').catch(() => undefined);
    },
  };
}

/**
 * The request body, or 'too-large' as soon as it passes the limit. Listeners rather than
 * `for await`: leaving that loop early would destroy the request, and the socket with it.
 */
function readBody(req: IncomingMessage, limit: number): Promise<Buffer | 'too-large'> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let total = 0;
    const onData = (chunk: Buffer) => {
      total += chunk.length;
      if (total > limit) {
        req.off('data', onData);
        req.off('end', onEnd);
        resolve('too-large');
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => resolve(Buffer.concat(chunks, total));
    req.on('data', onData);
    req.once('end', onEnd);
    req.once('error', reject);
  });
}

/**
 * The 413 goes out at once; the rest of the body is read and dropped (never buffered), so a
 * client still sending sees the answer rather than a reset connection.
 */
function tooLarge(req: IncomingMessage): [number, Record<string, string>, Buffer] {
  req.resume();
  return gatewayMessage(413, 'Request Entity Too Large');
}

function gatewayMessage(status: number, message: string): [number, Record<string, string>, Buffer] {
  return [status, { 'content-type': 'application/json' }, Buffer.from(JSON.stringify({ message }))];
}

function toEvent(
  req: IncomingMessage,
  record: InvocationRecord,
  body: Buffer,
): APIGatewayProxyEventV2 {
  const headers: Record<string, string> = {};
  const cookies: string[] = [];
  // rawHeaders keeps repeats apart; API Gateway joins them with commas, cookies go aside.
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    const name = req.rawHeaders[i]!.toLowerCase();
    const value = req.rawHeaders[i + 1]!;
    if (name === 'cookie') {
      cookies.push(...value.split(/;\s*/).filter(Boolean));
      continue;
    }
    // Hop-by-hop framing is API Gateway's own business; the function sees content-length.
    if (name === 'connection' || name === 'transfer-encoding' || name === 'keep-alive') continue;
    headers[name] = headers[name] === undefined ? value : `${headers[name]},${value}`;
  }
  const sourceIp = req.socket.remoteAddress?.replace(/^::ffff:/, '') ?? '127.0.0.1';
  headers['content-length'] = String(body.length);
  headers.host = DOMAIN;
  headers['x-forwarded-for'] = sourceIp;
  headers['x-forwarded-port'] = '443';
  headers['x-forwarded-proto'] = 'https';
  const now = new Date();
  const traceId = `Root=1-${Math.floor(now.getTime() / 1000).toString(16)}-${randomBytes(12).toString('hex')}`;
  headers['x-amzn-trace-id'] = traceId;

  const query: Record<string, string> = {};
  for (const [key, value] of new URLSearchParams(record.rawQueryString)) {
    query[key] = query[key] === undefined ? value : `${query[key]},${value}`;
  }
  const contentType = headers['content-type'] ?? '';
  const text = body.length > 0 && TEXT_BODY.test(contentType) && isUtf8(body);
  const event: APIGatewayProxyEventV2 = {
    version: '2.0',
    routeKey: '$default',
    rawPath: record.rawPath,
    rawQueryString: record.rawQueryString,
    headers,
    requestContext: {
      accountId: '123456789012',
      apiId: API_ID,
      domainName: DOMAIN,
      domainPrefix: API_ID,
      http: {
        method: record.method,
        path: record.rawPath,
        protocol: `HTTP/${req.httpVersion}`,
        sourceIp,
        userAgent: headers['user-agent'] ?? '',
      },
      requestId: randomBytes(10).toString('base64url'),
      routeKey: '$default',
      stage: '$default',
      time: now.toISOString(),
      timeEpoch: now.getTime(),
    },
    isBase64Encoded: body.length > 0 && !text,
  };
  if (cookies.length > 0) event.cookies = cookies;
  if (Object.keys(query).length > 0) event.queryStringParameters = query;
  if (body.length > 0) event.body = text ? body.toString('utf8') : body.toString('base64');
  return event;
}

function isUtf8(bytes: Buffer): boolean {
  return Buffer.from(bytes.toString('utf8'), 'utf8').equals(bytes);
}

/**
 * Payload 2.0: a result with a statusCode is used as given; anything else (a string, an
 * object without statusCode) is a 200 JSON body.
 */
function fromResult(result: APIGatewayProxyResultV2): [number, Record<string, string>, Buffer] {
  if (typeof result !== 'object' || result === null || !('statusCode' in result)) {
    const body = typeof result === 'string' ? result : JSON.stringify(result);
    return [200, { 'content-type': 'application/json' }, Buffer.from(body)];
  }
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(result.headers ?? {})) {
    headers[name.toLowerCase()] = String(value);
  }
  // result.cookies (Set-Cookie) are ignored: nothing in the cache sets them.
  const body = Buffer.from(result.body ?? '', result.isBase64Encoded ? 'base64' : 'utf8');
  return [result.statusCode ?? 200, headers, body];
}

function writeAnswer(
  res: ServerResponse,
  status: number,
  headers: Record<string, string>,
  body: Buffer,
): void {
  const framed: Record<string, string> = { ...headers };
  delete framed['transfer-encoding'];
  framed['content-length'] = String(body.length);
  framed['apigw-requestid'] = randomBytes(10).toString('base64url');
  res.writeHead(status, framed);
  res.end(body);
}
