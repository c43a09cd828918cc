/**
 * What the local API Gateway (api-gateway-local.ts) and the local function URL
 * (function-url-local.ts) share: both deliver payload format 2.0 events built from a Node
 * request, read request bodies only up to their limit, answer in their own JSON error shape,
 * and hand the handler a Lambda context whose remaining time runs down from the timeout.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { once } from 'node:events';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { APIGatewayProxyEventV2, Context } from 'aws-lambda';

/** The front door the event comes through: its id and the domain clients use. */
/**
 * A synchronous invocation's event, serialized (Lambda quotas: gettingstarted-limits.html): a
 * request body travels inside it, binary ones base64-encoded, behind either front door.
 */
export const LAMBDA_REQUEST_LIMIT = 6 * 1024 * 1024;

export interface EventOrigin {
  id: string;
  domainName: string;
}

/** The ids and domains each local front door puts in its events, shaped as AWS names them. */
export const EVENT_ORIGINS = {
  apiGateway: originOf('local0api1', 'execute-api.us-east-1.amazonaws.com'),
  functionUrl: originOf('local0url1abcdefghijklmnopqrstuv', 'lambda-url.us-east-1.on.aws'),
} satisfies Record<string, EventOrigin>;

function originOf(id: string, domain: string): EventOrigin {
  return { id, domainName: `${id}.${domain}` };
}

/** A running local front door and what it recorded (`R`: one entry a request). */
export interface LocalFrontDoor<R> {
  url: string;
  /** `127.0.0.1:<port>`, for DOCKER_HOST=tcp://... */
  hostPort: string;
  port: number;
  /** Every request so far, in order of arrival. */
  readonly invocations: R[];
  close(): Promise<void>;
}

/** Starts `server` on a free loopback port. */
export async function listenLocal<R>(server: Server, invocations: R[]): Promise<LocalFrontDoor<R>> {
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

/** What both front doors record of the request before the handler sees it. */
export interface RequestTarget {
  method: string;
  rawPath: string;
  rawQueryString: string;
}

export function requestTarget(req: IncomingMessage): RequestTarget {
  const url = new URL(req.url ?? '/', 'http://localhost');
  return {
    method: req.method ?? 'GET',
    rawPath: url.pathname,
    rawQueryString: url.search.slice(1),
  };
}

/** What API Gateway and function URLs treat as text in payload 2.0; other bodies are base64. */
const TEXT_BODY =
  /^(text\/|application\/(json|javascript|xml|x-www-form-urlencoded)\b|[^;]*\+(json|xml)\b)/i;

/**
 * The request body, or 'too-large' as soon as it passes the limit. Listeners rather than
 * `for await`: leaving that loop early would destroy the request, and the socket with it.
 */
export function readBody(req: IncomingMessage, limit: number): Promise<Buffer | 'too-large'> {
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

/** A front door's own JSON answer (not the handler's), with its status. */
export type Answer = [number, Record<string, string>, Buffer];

export function jsonAnswer(
  status: number,
  body: Record<string, string>,
  headers: Record<string, string> = {},
): Answer {
  return [
    status,
    { 'content-type': 'application/json', ...headers },
    Buffer.from(JSON.stringify(body)),
  ];
}

/**
 * A refusal that goes out at once; the rest of the body is read and dropped (never buffered),
 * so a client still sending sees the answer rather than a reset connection.
 */
export function refuseBody(req: IncomingMessage, answer: Answer): Answer {
  req.resume();
  return answer;
}

/**
 * A whole answer with its length: a gateway that buffers knows it before sending. An answer to
 * a HEAD keeps the length the handler states (see keepsDeclaredLength).
 */
export function writeBuffered(res: ServerResponse, [status, headers, body]: Answer): void {
  const framed: Record<string, string> = { ...headers };
  delete framed['transfer-encoding'];
  if (!keepsDeclaredLength(res, framed)) framed['content-length'] = String(body.length);
  res.writeHead(status, framed);
  res.end(body);
}

/**
 * Whether the handler's Content-Length goes to the client as it is: only on an answer to a HEAD,
 * where it is the length a GET would send (RFC 9110 8.6) rather than framing, and there is no
 * body for the front door to measure. Both local front doors assume the real ones pass it so;
 * a deployed stack is where to confirm it (docs/testing.md, the front-door suite).
 */
export function keepsDeclaredLength(
  res: ServerResponse,
  headers: Record<string, string | string[]>,
): boolean {
  return res.req?.method === 'HEAD' && headers['content-length'] !== undefined;
}

/**
 * The event a front door would invoke with, or undefined once `refuse` has answered: a request
 * whose declared length or body passes `limit` is refused without reading further.
 */
export async function receiveEvent(
  req: IncomingMessage,
  target: RequestTarget,
  origin: EventOrigin,
  limit: number,
  refuse: () => void,
): Promise<APIGatewayProxyEventV2 | undefined> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) return void refuse();
  const body = await readBody(req, limit);
  if (body === 'too-large') return void refuse();
  return toPayloadV2Event(req, target, body, origin);
}

export function toPayloadV2Event(
  req: IncomingMessage,
  target: RequestTarget,
  body: Buffer,
  origin: EventOrigin,
): APIGatewayProxyEventV2 {
  const headers: Record<string, string> = {};
  const cookies: string[] = [];
  // rawHeaders keeps repeats apart; the front door joins them with commas, cookies go aside.
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    const name = req.rawHeaders[i]!.toLowerCase();
    const value = req.rawHeaders[i + 1]!;
    if (name === 'cookie') {
      cookies.push(...value.split(/;\s*/).filter(Boolean));
      continue;
    }
    // Hop-by-hop framing is the front door's own business; the function sees content-length.
    if (name === 'connection' || name === 'transfer-encoding' || name === 'keep-alive') continue;
    headers[name] = headers[name] === undefined ? value : `${headers[name]},${value}`;
  }
  const sourceIp = req.socket.remoteAddress?.replace(/^::ffff:/, '') ?? '127.0.0.1';
  headers['content-length'] = String(body.length);
  headers.host = origin.domainName;
  headers['x-forwarded-for'] = sourceIp;
  headers['x-forwarded-port'] = '443';
  headers['x-forwarded-proto'] = 'https';
  const now = new Date();
  const traceId = `Root=1-${Math.floor(now.getTime() / 1000).toString(16)}-${randomBytes(12).toString('hex')}`;
  headers['x-amzn-trace-id'] = traceId;

  const query: Record<string, string> = {};
  for (const [key, value] of new URLSearchParams(target.rawQueryString)) {
    query[key] = query[key] === undefined ? value : `${query[key]},${value}`;
  }
  const contentType = headers['content-type'] ?? '';
  const text = body.length > 0 && TEXT_BODY.test(contentType) && isUtf8(body);
  const event: APIGatewayProxyEventV2 = {
    version: '2.0',
    routeKey: '$default',
    rawPath: target.rawPath,
    rawQueryString: target.rawQueryString,
    headers,
    requestContext: {
      accountId: '123456789012',
      apiId: origin.id,
      domainName: origin.domainName,
      domainPrefix: origin.id,
      http: {
        method: target.method,
        path: target.rawPath,
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

/** A Lambda context for one invocation of a function with this timeout, starting now. */
export function lambdaContext(timeoutMs: number, functionName = 'image-cache-api'): Context {
  const deadline = Date.now() + timeoutMs;
  const fail = () => {
    throw new Error('the callback API is not used by these handlers');
  };
  return {
    callbackWaitsForEmptyEventLoop: true,
    functionName,
    functionVersion: '$LATEST',
    invokedFunctionArn: `arn:aws:lambda:us-east-1:123456789012:function:${functionName}`,
    memoryLimitInMB: '1024',
    awsRequestId: randomUUID(),
    logGroupName: `/aws/lambda/${functionName}`,
    logStreamName: `local/[$LATEST]${randomBytes(16).toString('hex')}`,
    getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
    done: fail,
    fail,
    succeed: fail,
  };
}

/** An HTTP API (payload 2.0) event for the `api` handler, as API Gateway sends a bodiless request. */
export function apiEvent(
  method: string,
  path: string,
  headers: Record<string, string> = {},
  rawQueryString = '',
): APIGatewayProxyEventV2 {
  return {
    version: '2.0',
    routeKey: '$default',
    rawPath: path,
    rawQueryString,
    headers: { host: 'abc123.execute-api.eu-west-1.amazonaws.com', ...headers },
    requestContext: {
      accountId: '123456789012',
      apiId: 'abc123',
      domainName: 'abc123.execute-api.eu-west-1.amazonaws.com',
      domainPrefix: 'abc123',
      http: { method, path, protocol: 'HTTP/1.1', sourceIp: '203.0.113.7', userAgent: 'curl/8' },
      requestId: 'req',
      routeKey: '$default',
      stage: '$default',
      time: '29/Nov/2026:15:30:00 +0000',
      timeEpoch: 1_795_966_200_000,
    },
    isBase64Encoded: false,
  };
}
