import type { IncomingMessage, ServerResponse } from 'node:http';
import type { RequestTimeLimits } from './config.ts';

/**
 * Time limits the Node server puts on what a client sends. Node itself bounds the headers
 * (`headersTimeout`); its `requestTimeout` is a fixed total that would cut a large load off on
 * a slow link, so bodies are judged by their rate instead, and only for the time the server
 * was ready for more (a body the server is slow to consume is not the client's fault).
 */

const TICK_MS = 1000;
/** After answering before the body arrived: what is still read, so the client sees the answer. */
const LINGER_MS = 2000;
const LINGER_BYTES = 1024 * 1024;

export class BodyTooSlowError extends Error {}

/**
 * Watches a request body while it arrives: once a whole window of `bodyTimeoutMs` in which the
 * server was ready for data brought fewer than `minBodyBytesPerSecond` per second (or nothing),
 * the client gets a 408 (when nothing was answered yet) and the connection ends; the body fails
 * with a BodyTooSlowError for whatever reads it. Answers a function that stops watching.
 */
export function watchBody(
  req: IncomingMessage,
  res: ServerResponse,
  limits: RequestTimeLimits,
): () => void {
  const windowTicks = Math.max(1, Math.round(limits.bodyTimeoutMs / TICK_MS));
  const needed = Math.max(
    1,
    Math.floor((limits.minBodyBytesPerSecond * limits.bodyTimeoutMs) / 1000),
  );
  // Bytes that arrived in each of the last ticks the server spent waiting for the client.
  const recent: number[] = [];
  let seen = req.socket.bytesRead;
  const timer = setInterval(() => {
    if (req.complete || req.destroyed) {
      stop();
      return;
    }
    const now = req.socket.bytesRead;
    const arrived = now - seen;
    seen = now;
    // A full buffer means the reader is behind: the client is not the one waited on.
    if (req.readableLength >= req.readableHighWaterMark) return;
    recent.push(arrived);
    if (recent.length > windowTicks) recent.shift();
    if (recent.length < windowTicks) return;
    const total = recent.reduce((a, b) => a + b, 0);
    if (total >= needed) return;
    stop();
    const error = new BodyTooSlowError(
      `request body too slow: ${total} bytes in ${limits.bodyTimeoutMs / 1000}s, at least ${needed} needed`,
    );
    if (res.headersSent) {
      req.destroy(error);
      return;
    }
    const body = `${JSON.stringify({ message: error.message })}\n`;
    res.writeHead(408, {
      'Content-Type': 'application/json',
      'Content-Length': String(Buffer.byteLength(body)),
      Connection: 'close',
    });
    res.end(body, () => req.destroy(error));
  }, TICK_MS);
  timer.unref();
  const stop = () => clearInterval(timer);
  return stop;
}

/**
 * Once the answer went out while the client was still sending a body nobody will read (a 401
 * before a load, a refused archive), the connection ends: it is read for a moment more so the
 * client, still writing, sees the answer rather than a reset, then closed. Node would
 * otherwise drain a body of any size at any pace to keep the connection alive.
 */
export function closeAfterUnreadBody(req: IncomingMessage, res: ServerResponse): void {
  res.once('finish', () => {
    if (req.complete || req.destroyed) return;
    // Node's own finish handler has started discarding the body (`_dump`); count what passes.
    let drained = 0;
    const stop = () => {
      clearTimeout(timer);
      req.off('data', count);
    };
    const close = () => {
      stop();
      req.socket.destroy();
    };
    const count = (chunk: Buffer) => {
      drained += chunk.length;
      if (drained > LINGER_BYTES) close();
    };
    const timer = setTimeout(close, LINGER_MS);
    timer.unref();
    req.on('data', count);
    // The body ended after all: the connection may serve another request.
    req.once('end', stop);
  });
}
