/**
 * The response stream function-url-local.ts hands a streaming handler: a Writable whose bytes
 * go to the client as they come, read the way Lambda reads them. With the HTTP integration
 * content type, the bytes up to the first eight NULs are the JSON prelude (status, headers),
 * the rest the body; with any other content type, everything is a 200 body of that type.
 * The write callback waits for the client socket and for the bandwidth throttle, so the handler
 * sees backpressure as it would from Lambda.
 */
import { randomBytes } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import { Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import type { StreamifyHandler } from 'aws-lambda';
import { keepsDeclaredLength } from './lambda-http-event.ts';

/** Kept apart from the adapter's own constants, so a wrong one there fails the tests. */
const INTEGRATION_CONTENT_TYPE = 'application/vnd.awslambda.http-integration-response';
const DELIMITER = Buffer.alloc(8);
/** A prelude this big without its delimiter is a broken stream, not a slow one. */
const MAX_PRELUDE = 1024 * 1024;
/**
 * Framing is the front door's own: it streams the body chunked, whatever the prelude says (but
 * for a HEAD's Content-Length, which is no framing: see keepsDeclaredLength).
 */
const FRAMING = new Set(['content-length', 'transfer-encoding', 'connection']);

/** The response stream's type as the runtime's types describe it. */
type RuntimeStream = Parameters<StreamifyHandler>[1];

export type CutReason = 'cap' | 'timeout' | 'handler-error' | 'client-gone';

export interface ResponseSinkOptions {
  /** Body bytes past this are not sent: the connection is dropped. */
  cap: number;
  unthrottledBytes: number;
  bytesPerSecond: number;
  onHead(status: number): void;
  onBody(bytes: Buffer): void;
  onEnd(cut?: CutReason): void;
}

export class ResponseSink extends Writable {
  private contentType: string | undefined;
  private prelude = Buffer.alloc(0);
  private headSent = false;
  private bodyBytes = 0;
  private streamBytes = 0;
  /** When the stream passed the unthrottled bytes. */
  private throttledSince: number | undefined;
  private done = false;

  constructor(
    private readonly res: ServerResponse,
    private readonly options: ResponseSinkOptions,
  ) {
    super();
    // Destroying with an error (timeout, cut) emits it; a handler need not listen for it.
    this.on('error', () => {});
    res.on('close', () => {
      if (res.writableFinished) return;
      this.finish('client-gone');
      this.destroy(new Error('the client closed the connection'));
    });
  }

  /** This stream as the runtime's type for it (a Writable with setContentType, which this is). */
  asRuntimeStream(): RuntimeStream {
    return this as unknown as RuntimeStream;
  }

  /** What the runtime's response stream offers; HttpResponseStream.from calls it. */
  setContentType(type: string): void {
    this.contentType = type;
  }

  /** Ends the invocation as Lambda would: a stream cut where it is, or a 502 before the head. */
  abort(reason: CutReason): void {
    if (this.done) return;
    this.finish(reason);
    this.destroy(new Error(`the invocation ended (${reason})`));
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error) => void) {
    const delay = this.throttleDelay(chunk.length);
    const body = this.headSent ? chunk : this.takeHead(chunk);
    if (body instanceof Error) return callback(body);
    if (body === undefined || body.length === 0) return callback();
    const room = this.options.cap - this.bodyBytes;
    const sent = body.length > room ? body.subarray(0, room) : body;
    this.bodyBytes += sent.length;
    if (sent.length > 0) this.options.onBody(sent);
    const drained = this.res.write(sent);
    if (sent.length < body.length) {
      this.finish('cap');
      this.res.destroy();
      return callback(new Error(`the response passed the ${this.options.cap} byte cap`));
    }
    const proceed = () => setTimeout(() => callback(), delay);
    if (drained) proceed();
    else this.res.once('drain', proceed);
  }

  override _final(callback: (error?: Error) => void) {
    if (!this.headSent) {
      if (this.prelude.length > 0) {
        this.finish('handler-error');
        this.answerError();
        return callback();
      }
      this.sendHead(200, { 'content-type': this.contentType ?? 'application/octet-stream' });
    }
    this.finish();
    this.res.end();
    finished(this.res).then(
      () => callback(),
      () => callback(),
    );
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void) {
    // Destroyed before it ended: the handler failed it (or the client left, see the constructor).
    this.finish('handler-error');
    if (!this.res.writableFinished) {
      if (this.headSent) this.res.destroy();
      else this.answerError();
    }
    callback(error);
  }

  /** The body part of this chunk once the head is known; undefined while the prelude lasts. */
  private takeHead(chunk: Buffer): Buffer | Error | undefined {
    if (this.contentType !== INTEGRATION_CONTENT_TYPE) {
      this.sendHead(200, { 'content-type': this.contentType ?? 'application/octet-stream' });
      return chunk;
    }
    this.prelude = Buffer.concat([this.prelude, chunk]);
    const end = this.prelude.indexOf(DELIMITER);
    if (end < 0) {
      return this.prelude.length > MAX_PRELUDE ? new Error('no prelude delimiter') : undefined;
    }
    let head: { statusCode?: number; headers?: Record<string, string>; cookies?: string[] };
    try {
      head = JSON.parse(this.prelude.subarray(0, end).toString('utf8'));
    } catch (error) {
      return error as Error;
    }
    const headers: Record<string, string | string[]> = {};
    for (const [name, value] of Object.entries(head.headers ?? {})) {
      headers[name.toLowerCase()] = String(value);
    }
    for (const name of FRAMING) {
      if (name !== 'content-length' || !keepsDeclaredLength(this.res, headers))
        delete headers[name];
    }
    if (head.cookies?.length) headers['set-cookie'] = head.cookies;
    this.sendHead(head.statusCode ?? 200, headers);
    return this.prelude.subarray(end + DELIMITER.length);
  }

  private sendHead(status: number, headers: Record<string, string | string[]>): void {
    this.headSent = true;
    this.options.onHead(status);
    this.res.writeHead(status, { ...headers, 'x-amzn-requestid': randomBytes(16).toString('hex') });
    // The head goes out now, not with the first body bytes: a pull's status is known early.
    this.res.flushHeaders();
  }

  /** Lambda's answer when the function failed before sending a head. */
  private answerError(): void {
    this.headSent = true;
    this.options.onHead(502);
    if (this.res.headersSent) return void this.res.destroy();
    this.res.writeHead(502, { 'content-type': 'application/json' });
    this.res.end(JSON.stringify({ Message: 'Internal Server Error' }));
  }

  private finish(cut?: CutReason): void {
    if (this.done) return;
    this.done = true;
    this.options.onEnd(cut);
  }

  /** How long to hold this chunk's callback so the stream keeps to the bandwidth. */
  private throttleDelay(bytes: number): number {
    this.streamBytes += bytes;
    const over = this.streamBytes - this.options.unthrottledBytes;
    if (over <= 0) return 0;
    this.throttledSince ??= performance.now();
    const dueAt = this.throttledSince + (over / this.options.bytesPerSecond) * 1000;
    return Math.max(0, dueAt - performance.now());
  }
}
