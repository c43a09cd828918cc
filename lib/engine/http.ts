import type { Readable } from 'node:stream';
import { errorBody, InvalidArgumentError } from '../errors.ts';

/**
 * The HTTP shapes the routes see: small, with Node streams for bodies, so the same routes serve
 * the Node server and the Lambda adapter without web-stream conversions on the hot path.
 */
export interface HttpRequest {
  method: string;
  /** Path without the `/v1.NN` prefix, percent-decoding left to the route. */
  path: string;
  query: URLSearchParams;
  headers: Record<string, string | undefined>;
  body?: Readable;
  /** The API version the client asked for (`1.47`), or undefined for unversioned paths. */
  apiVersion?: string;
  /**
   * When the front door stops waiting for the answer (epoch ms): API Gateway's 30 s, or the
   * function's remaining time on a response stream. Undefined on the Node server, which has no
   * limit. Long work (pulls, loads) hands over to a background job before it passes.
   */
  deadline?: number;
  /**
   * Bytes the front door can carry back in one answer (a Lambda response), when it has a limit.
   * The registry door streams a blob it does not hold only when it fits.
   */
  responseLimit?: number;
  /**
   * Aborted when the client leaves before the answer is complete, where the front door can tell
   * (the Node server). Waits on jobs stop then instead of polling for nobody.
   */
  signal?: AbortSignal;
}

export interface HttpResponse {
  status: number;
  headers?: Record<string, string>;
  body?: string | Uint8Array | Readable;
  /**
   * Who asked, once the router has checked their token: for the front door's request log, never
   * sent to the client. Undefined for open endpoints, refused tokens and servers without auth.
   */
  caller?: Caller;
}

/** A token's public handles (TokenRecord.id and name): never the token or its hash. */
export interface Caller {
  tokenId: string;
  tokenName: string;
}

export function callerOf(token: { id: string; name: string } | undefined): Caller | undefined {
  return token && { tokenId: token.id, tokenName: token.name };
}

/** The response with its caller, when there is one. */
export function answeredFor(response: HttpResponse, caller: Caller | undefined): HttpResponse {
  return caller ? { ...response, caller } : response;
}

export function json(
  status: number,
  value: unknown,
  headers: Record<string, string> = {},
): HttpResponse {
  return {
    status,
    headers: { 'Content-Type': 'application/json', ...headers },
    body: `${JSON.stringify(value)}\n`,
  };
}

export function errorResponse(error: unknown): HttpResponse {
  const { status, body } = errorBody(error);
  return json(status, body);
}

/** A boolean query parameter as Docker sends them: absent, empty, 0, no, false and none are off. */
export function boolQuery(query: URLSearchParams, name: string): boolean {
  const value = (query.get(name) ?? '').trim().toLowerCase();
  return !['', '0', 'no', 'false', 'none'].includes(value);
}

/** `?limit=N` of a listing: `fallback` when absent, a 400 unless a whole number from 1 to `max`. */
export function limitQuery(query: URLSearchParams, fallback: number, max: number): number {
  const text = query.get('limit');
  const limit = text === null ? fallback : Number(text);
  if (!Number.isInteger(limit) || limit < 1 || limit > max) {
    throw new InvalidArgumentError(`limit must be a whole number from 1 to ${max}`);
  }
  return limit;
}

/** A small request body (JSON of a few KB) read whole; a 400 past `maxBytes`. */
export async function readSmallBody(body: Readable | undefined, maxBytes: number): Promise<string> {
  if (!body) return '';
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of body) {
    const bytes = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as Uint8Array);
    total += bytes.length;
    if (total > maxBytes) {
      throw new InvalidArgumentError(`the request body is larger than ${maxBytes} bytes`);
    }
    chunks.push(bytes);
  }
  return Buffer.concat(chunks).toString('utf8');
}
