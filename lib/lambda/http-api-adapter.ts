/**
 * API Gateway HTTP API (payload format 2.0) events to the router's HttpRequest, and its
 * HttpResponse back to the structured result. The only place that knows the event shape: the
 * routes see the same request the Node server hands them, and the function URL's streaming
 * front door (stream-adapter.ts), whose events have the same shape, reads them through here.
 *
 * A buffered Lambda response is capped at 6 MB (the serialized JSON, so binary bodies lose a
 * quarter to base64). A body past the cap is refused with a message that names the way around
 * it, rather than left to fail as an opaque 502 from API Gateway.
 */
import { Readable } from 'node:stream';
import type {
  APIGatewayProxyEventV2,
  APIGatewayProxyStructuredResultV2,
  Context,
} from 'aws-lambda';
import { errorResponse, type HttpRequest, type HttpResponse } from '../engine/http.ts';
import { LAMBDA_RESPONSE_LIMIT, ResponseTooLargeError } from './response-limits.ts';

/** Kept free for the status, headers and JSON quoting around the body. */
const ENVELOPE_RESERVE = 16 * 1024;

/** API Gateway answers 503 after this, however long the function may still run. */
export const HTTP_API_TIMEOUT_MS = 30_000;
/** Left for the answer to travel back (and be buffered, base64'd) after a route hands over. */
const HTTP_API_DEADLINE_MARGIN_MS = 4_000;

/** Hop-by-hop headers mean nothing through API Gateway, which sets its own framing. */
const DROPPED_RESPONSE_HEADERS = new Set(['connection', 'transfer-encoding', 'content-length']);

/** Bodies sent as text; everything else (tarballs, blobs) is base64. */
const TEXT_TYPES = /^(text\/|application\/(json|x-ndjson|[\w.+-]+\+json)\b)/i;

/** The part of Lambda's context the deadlines need (tests pass just this). */
export type RemainingTime = Pick<Context, 'getRemainingTimeInMillis'>;

/**
 * When API Gateway stops waiting: its 30 s, or the function's own timeout if that comes first,
 * less a margin for the answer to get back.
 */
export function httpApiDeadline(context: RemainingTime, now = Date.now()): number {
  const window = Math.min(HTTP_API_TIMEOUT_MS, context.getRemainingTimeInMillis());
  return now + window - HTTP_API_DEADLINE_MARGIN_MS;
}

/**
 * The URL that asks for this save as a redirect to its S3 export, for the 413 message; undefined
 * for anything but a save (`GET /images/get`, `GET /images/{name}/get`).
 */
export function saveRedirectUrl(event: APIGatewayProxyEventV2): string | undefined {
  const path = event.rawPath || '/';
  if (event.requestContext.http.method.toUpperCase() !== 'GET') return undefined;
  if (!/\/images\/(.+\/)?get$/.test(path)) return undefined;
  const query = new URLSearchParams(event.rawQueryString ?? '');
  query.delete('redirect');
  query.append('redirect', '1');
  const host = event.headers?.host ?? event.requestContext.domainName;
  return `https://${host}${path}?${query}`;
}

/**
 * `deadline`: when the front door stops waiting (httpApiDeadline, streamDeadline);
 * `responseLimit`: the bytes it can carry back.
 */
export function toHttpRequest(
  event: APIGatewayProxyEventV2,
  deadline?: number,
  responseLimit?: number,
): HttpRequest {
  const headers: Record<string, string | undefined> = {};
  // API Gateway already joins repeated headers with commas; cookies arrive apart and are unused.
  for (const [name, value] of Object.entries(event.headers ?? {})) {
    if (value !== undefined) headers[name.toLowerCase()] = value;
  }
  const request: HttpRequest = {
    method: event.requestContext.http.method.toUpperCase(),
    path: event.rawPath || '/',
    // rawQueryString keeps repeated keys (names=a&names=b); queryStringParameters joins them.
    query: new URLSearchParams(event.rawQueryString ?? ''),
    headers,
  };
  if (deadline !== undefined) request.deadline = deadline;
  if (responseLimit !== undefined) request.responseLimit = responseLimit;
  if (event.body !== undefined) {
    const bytes = Buffer.from(event.body, event.isBase64Encoded ? 'base64' : 'utf8');
    // API Gateway may re-frame the body; the length the routes check is the one they receive.
    headers['content-length'] = String(bytes.length);
    request.body = Readable.from([bytes]);
  }
  return request;
}

export interface ResultOptions {
  /** Bytes the serialized result may take; LAMBDA_RESPONSE_LIMIT unless a test lowers it. */
  limit?: number;
  /** For a save: the same request as a redirect to S3 (saveRedirectUrl), named in the 413. */
  saveRedirect?: string;
}

export async function toHttpApiResult(
  response: HttpResponse,
  options: ResultOptions = {},
): Promise<APIGatewayProxyStructuredResultV2> {
  const limit = options.limit ?? LAMBDA_RESPONSE_LIMIT;
  const headers = forwardedHeaders(response);
  const contentType = findHeader(response.headers, 'content-type') ?? '';
  const text = TEXT_TYPES.test(contentType);
  // Base64 turns 3 bytes into 4, so a binary body has three quarters of the room.
  const room = limit - ENVELOPE_RESERVE;
  const maxBodyBytes = text ? room : Math.floor((room * 3) / 4);

  let body: Buffer | string | undefined;
  try {
    body = await bufferBody(response, maxBodyBytes, options.saveRedirect);
  } catch (error) {
    return toHttpApiResult(errorResponse(error), options);
  }

  const result: APIGatewayProxyStructuredResultV2 = { statusCode: response.status, headers };
  if (typeof body === 'string') {
    result.body = body;
    result.isBase64Encoded = false;
  } else if (body !== undefined) {
    result.body = text ? body.toString('utf8') : body.toString('base64');
    result.isBase64Encoded = !text;
  }
  // JSON escaping can still push a text body over: measure what Lambda will measure.
  const size = Buffer.byteLength(JSON.stringify(result));
  if (size > limit) {
    return toHttpApiResult(
      errorResponse(new ResponseTooLargeError(size, limit, { saveRedirect: options.saveRedirect })),
      options,
    );
  }
  return result;
}

/** Reads the body into memory, stopping (and releasing the stream) as soon as it cannot fit. */
async function bufferBody(
  response: HttpResponse,
  maxBytes: number,
  saveRedirect?: string,
): Promise<Buffer | string | undefined> {
  const { body } = response;
  if (body === undefined || typeof body === 'string') return body;
  if (body instanceof Uint8Array) {
    if (body.byteLength > maxBytes) {
      throw new ResponseTooLargeError(body.byteLength, maxBytes, { saveRedirect });
    }
    return Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  }
  const declared = declaredLength(response);
  if (declared !== undefined && declared > maxBytes) {
    body.destroy();
    throw new ResponseTooLargeError(declared, maxBytes, { saveRedirect });
  }
  const chunks: Buffer[] = [];
  let total = 0;
  try {
    for await (const chunk of body) {
      const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer);
      total += bytes.length;
      if (total > maxBytes) throw new ResponseTooLargeError(undefined, maxBytes, { saveRedirect });
      chunks.push(bytes);
    }
  } finally {
    // Leaving the loop early (too large, or an error) must not leave the producer running.
    if (!body.readableEnded) body.destroy();
  }
  return Buffer.concat(chunks, total);
}

/**
 * The response's headers without the hop-by-hop ones, which the front door sets itself. A
 * body-less answer keeps its Content-Length: there it is not framing but the length a GET would
 * send (a manifest or blob HEAD, which the registry spec requires to carry it), and the front
 * door has no body to measure it from.
 */
export function forwardedHeaders(response: HttpResponse): Record<string, string> {
  const headers: Record<string, string> = {};
  const bodyless = response.body === undefined;
  for (const [name, value] of Object.entries(response.headers ?? {})) {
    const lower = name.toLowerCase();
    const isLength = lower === 'content-length';
    if (!DROPPED_RESPONSE_HEADERS.has(lower) || (isLength && bodyless)) headers[name] = value;
  }
  return headers;
}

/** The Content-Length a streamed body promises, if it states one. */
export function declaredLength(response: HttpResponse): number | undefined {
  const declared = Number(findHeader(response.headers, 'content-length') ?? Number.NaN);
  return Number.isFinite(declared) ? declared : undefined;
}

function findHeader(headers: Record<string, string> | undefined, name: string): string | undefined {
  for (const [key, value] of Object.entries(headers ?? {})) {
    if (key.toLowerCase() === name) return value;
  }
  return undefined;
}
