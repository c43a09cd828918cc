/**
 * The router's HttpResponse onto a Lambda response stream (a function URL with InvokeMode
 * RESPONSE_STREAM), in Lambda's HTTP integration format: a JSON prelude with the status and
 * headers, eight NUL bytes, then the body as it is produced, with backpressure. The request side
 * is the HTTP API's (same payload 2.0 events), so it is read by http-api-adapter.ts.
 *
 * Why a second front door: the docker CLI follows no redirect, so a buffered answer (6 MB) is as
 * big as its `docker save` can get behind API Gateway, and a pull there is cut at 30 s. A stream
 * carries 200 MB for as long as the function runs (15 min at most).
 */
import type { Readable, Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { errorResponse, type HttpResponse } from '../engine/http.ts';
import { declaredLength, forwardedHeaders, type RemainingTime } from './http-api-adapter.ts';
import { ResponseTooLargeError, STREAMED_RESPONSE_LIMIT } from './response-limits.ts';

/** The content type that tells Lambda a prelude leads the stream. */
export const HTTP_INTEGRATION_CONTENT_TYPE = 'application/vnd.awslambda.http-integration-response';
/** Ends the prelude; JSON never holds a raw NUL, so the first eight mark the body's start. */
export const PRELUDE_DELIMITER = Buffer.alloc(8);
/** Kept free under the cap for the prelude, so the body alone is measured against the rest. */
const PRELUDE_RESERVE = 16 * 1024;
/**
 * Left before the function's timeout: a route that hands over to a background job at the
 * deadline still has to write its last lines and end the stream before Lambda stops it.
 */
const STREAM_DEADLINE_MARGIN_MS = 10_000;

export interface StreamPrelude {
  statusCode: number;
  headers: Record<string, string>;
}

export interface StreamOptions {
  /** Bytes the whole stream may take; STREAMED_RESPONSE_LIMIT unless a test lowers it. */
  limit?: number;
  /** For a save: the same request as a redirect to S3 (saveRedirectUrl), named in the 413. */
  saveRedirect?: string;
}

/** The global the Lambda Node runtime defines for streaming handlers; absent anywhere else. */
interface LambdaStreaming {
  HttpResponseStream: { from(stream: Writable, prelude: Record<string, unknown>): Writable };
  streamifyResponse<Handler>(handler: Handler): Handler;
}

export function lambdaStreaming(): LambdaStreaming | undefined {
  const global = (globalThis as { awslambda?: Partial<LambdaStreaming> }).awslambda;
  // The AWS SDK (@aws/lambda-invoke-store) leaves an empty `awslambda` wherever it loads: only
  // the runtime's has these two.
  if (typeof global?.streamifyResponse !== 'function') return undefined;
  if (typeof global.HttpResponseStream?.from !== 'function') return undefined;
  return global as LambdaStreaming;
}

/** When the function URL stops waiting: the function's own timeout, less a margin. */
export function streamDeadline(context: RemainingTime, now = Date.now()): number {
  return now + context.getRemainingTimeInMillis() - STREAM_DEADLINE_MARGIN_MS;
}

/**
 * Answers on `responseStream` with what `produce` resolves to. Until the head is written (which
 * waits for the body's first chunk, as the pull route holds its status until its first line) a
 * failure still becomes an error status with Docker's `{"message"}` body; after it, a failure can
 * only cut the stream, which is destroyed so the client sees a broken response rather than a
 * short one that looks whole. Resolves, once the stream is over, to the status that was sent and
 * who asked (for the request log).
 */
export async function sendStreamed(
  responseStream: Writable,
  produce: () => Promise<HttpResponse>,
  options: StreamOptions = {},
): Promise<Pick<HttpResponse, 'status' | 'caller'>> {
  const maxBodyBytes = (options.limit ?? STREAMED_RESPONSE_LIMIT) - PRELUDE_RESERVE;
  let response: HttpResponse;
  let body: BodyReader;
  let caller: HttpResponse['caller'];
  try {
    const produced = await produce();
    caller = produced.caller;
    response = refuseOversized(produced, maxBodyBytes, options.saveRedirect);
    body = await openBody(response.body);
  } catch (error) {
    response = errorResponse(error);
    body = await openBody(response.body);
  }
  const out = writeHead(responseStream, {
    statusCode: response.status,
    headers: forwardedHeaders(response),
  });
  await pump(body, out, maxBodyBytes);
  return { status: response.status, ...(caller && { caller }) };
}

/** A body with its first chunk already read (undefined when it is empty). */
interface BodyReader {
  first: Buffer | undefined;
  next(): Promise<Buffer | undefined>;
  /** Stops the producer if it has more to give (a cut or a failed client). */
  release(): Promise<void>;
}

async function openBody(body: HttpResponse['body']): Promise<BodyReader> {
  if (body === undefined || typeof body === 'string' || body instanceof Uint8Array) {
    const bytes = body === undefined ? undefined : Buffer.from(body);
    return {
      first: bytes?.length ? bytes : undefined,
      next: async () => undefined,
      release: async () => {},
    };
  }
  const chunks = (body as Readable)[Symbol.asyncIterator]() as AsyncIterator<Buffer | string>;
  const next = async () => {
    const step = await chunks.next();
    return step.done ? undefined : Buffer.from(step.value);
  };
  // return() ends the iteration, which destroys the stream and with it whatever feeds it.
  return { first: await next(), next, release: async () => void (await chunks.return?.()) };
}

/** A body whose length is known and past the cap is refused before a byte is sent. */
function refuseOversized(
  response: HttpResponse,
  maxBodyBytes: number,
  saveRedirect: string | undefined,
): HttpResponse {
  const { body } = response;
  const length =
    body === undefined
      ? 0
      : typeof body === 'string'
        ? Buffer.byteLength(body)
        : body instanceof Uint8Array
          ? body.byteLength
          : declaredLength(response);
  if (length === undefined || length <= maxBodyBytes) return response;
  if (body !== undefined && typeof body !== 'string' && !(body instanceof Uint8Array)) {
    body.destroy();
  }
  throw new ResponseTooLargeError(length, maxBodyBytes, { saveRedirect, frontDoor: 'streamed' });
}

/**
 * The prelude through the runtime's own HttpResponseStream where it exists (it also sets the
 * stream's content type), else the same bytes written here, as tests and local runs need.
 */
function writeHead(stream: Writable, prelude: StreamPrelude): Writable {
  const runtime = lambdaStreaming();
  if (runtime) {
    const out = runtime.HttpResponseStream.from(stream, { ...prelude });
    // The runtime writes the prelude just before the first write: an empty one makes sure a
    // body-less answer (HEAD /_ping, 204) still sends its status and headers.
    out.write('');
    return out;
  }
  (stream as { setContentType?: (type: string) => void }).setContentType?.(
    HTTP_INTEGRATION_CONTENT_TYPE,
  );
  stream.write(Buffer.concat([Buffer.from(JSON.stringify(prelude)), PRELUDE_DELIMITER]));
  return stream;
}

async function pump(body: BodyReader, out: Writable, maxBodyBytes: number): Promise<void> {
  // A client gone mid-stream fails the stream; without a listener that error would be thrown.
  let failure: Error | undefined;
  out.on('error', (error) => {
    failure ??= error;
  });
  let sent = 0;
  try {
    for (let chunk = body.first; chunk !== undefined; chunk = await body.next()) {
      if (sent + chunk.length > maxBodyBytes) {
        // Only a body of unknown length gets here (a known one was refused up front). What went
        // out is short, so the stream is broken below rather than ended as if it were whole.
        await write(out, chunk.subarray(0, maxBodyBytes - sent));
        throw new Error(`response cut at ${maxBodyBytes} bytes, the most a stream can carry`);
      }
      await write(out, chunk);
      sent += chunk.length;
    }
  } catch (error) {
    console.error('response stream failed after its head was sent', failure ?? error);
    await body.release().catch(() => {});
    out.destroy(error instanceof Error ? error : new Error(String(error)));
    return;
  }
  await body.release();
  out.end();
  await finished(out).catch((error: unknown) => console.error(error));
}

/** Writes with backpressure: waits for 'drain', and fails if the stream closes or errors first. */
async function write(out: Writable, chunk: Buffer): Promise<void> {
  if (out.destroyed) throw new Error('the response stream is closed');
  if (out.write(chunk)) return;
  await new Promise<void>((resolve, reject) => {
    const settle = (error?: Error) => {
      out.off('drain', onDrain);
      out.off('close', onClose);
      out.off('error', settle);
      if (error) reject(error);
      else resolve();
    };
    const onDrain = () => settle();
    const onClose = () => settle(new Error('the response stream closed'));
    out.on('drain', onDrain);
    out.on('close', onClose);
    out.on('error', settle);
  });
}
