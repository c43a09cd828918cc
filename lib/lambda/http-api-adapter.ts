/**
 * API Gateway HTTP API (payload format 2.0) events to the router's HttpRequest, and its
 * HttpResponse back to the structured result. The only place that knows the event shape: the
 * routes see the same request the Node server hands them.
 *
 * A buffered Lambda response is capped at 6 MB (the serialized JSON, so binary bodies lose a
 * quarter to base64). A body past the cap is refused with a message that names the way around
 * it, rather than left to fail as an opaque 502 from API Gateway.
 */
import { Readable } from 'node:stream';
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import { errorResponse, type HttpRequest, type HttpResponse } from '../engine/http.ts';
import { ImageCacheError } from '../errors.ts';

/** What Lambda accepts as the serialized result of a buffered (not streamed) invocation. */
export const LAMBDA_RESPONSE_LIMIT = 6 * 1024 * 1024;
/** Kept free for the status, headers and JSON quoting around the body. */
const ENVELOPE_RESERVE = 16 * 1024;

/** Hop-by-hop headers mean nothing through API Gateway, which sets its own framing. */
const DROPPED_RESPONSE_HEADERS = new Set(['connection', 'transfer-encoding', 'content-length']);

/** Bodies sent as text; everything else (tarballs, blobs) is base64. */
const TEXT_TYPES = /^(text\/|application\/(json|x-ndjson|[\w.+-]+\+json)\b)/i;

/**
 * The response was larger than a buffered Lambda answer can carry. 413 because the content is
 * too large for this transport, not because the server failed; the message says what to do.
 */
export class ResponseTooLargeError extends ImageCacheError {
  constructor(bytes: number | undefined, limit: number, saveRedirect?: string) {
    const size = bytes === undefined ? 'more than' : `${bytes} bytes, more than`;
    const url = saveRedirect ?? 'https://<endpoint>/images/get?names=<image>&redirect=1';
    super(
      'PAYLOAD_TOO_LARGE',
      `the response is ${size} the ${limit} bytes a Lambda response behind API Gateway can ` +
        'carry; large saves go through S3 as a presigned download: ' +
        `curl -L -H 'Authorization: Bearer <token>' -o image.tar '${url}' ` +
        '(the docker CLI does not follow redirects), or image-cache save -o image.tar <image>',
    );
  }
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

export function toHttpRequest(event: APIGatewayProxyEventV2): HttpRequest {
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
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(response.headers ?? {})) {
    if (!DROPPED_RESPONSE_HEADERS.has(name.toLowerCase())) headers[name] = value;
  }
  const contentType = findHeader(response.headers, 'content-type') ?? '';
  const text = TEXT_TYPES.test(contentType);
  // Base64 turns 3 bytes into 4, so a binary body has three quarters of the room.
  const room = limit - ENVELOPE_RESERVE;
  const maxBodyBytes = text ? room : Math.floor((room * 3) / 4);

  let body: Buffer | string | undefined;
  try {
    body = await bufferBody(response, maxBodyBytes, options.saveRedirect);
  } catch (error) {
    if (!(error instanceof ResponseTooLargeError)) console.error(error);
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
      errorResponse(new ResponseTooLargeError(size, limit, options.saveRedirect)),
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
      throw new ResponseTooLargeError(body.byteLength, maxBytes, saveRedirect);
    }
    return Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  }
  const declared = Number(findHeader(response.headers, 'content-length') ?? Number.NaN);
  if (Number.isFinite(declared) && declared > maxBytes) {
    body.destroy();
    throw new ResponseTooLargeError(declared, maxBytes, saveRedirect);
  }
  const chunks: Buffer[] = [];
  let total = 0;
  try {
    for await (const chunk of body) {
      const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer);
      total += bytes.length;
      if (total > maxBytes) throw new ResponseTooLargeError(undefined, maxBytes, saveRedirect);
      chunks.push(bytes);
    }
  } finally {
    // Leaving the loop early (too large, or an error) must not leave the producer running.
    if (!body.readableEnded) body.destroy();
  }
  return Buffer.concat(chunks, total);
}

function findHeader(headers: Record<string, string> | undefined, name: string): string | undefined {
  for (const [key, value] of Object.entries(headers ?? {})) {
    if (key.toLowerCase() === name) return value;
  }
  return undefined;
}
