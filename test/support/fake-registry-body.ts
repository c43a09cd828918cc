import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { setTimeout as delay } from 'node:timers/promises';
import type { BodyFault } from './fake-registry.ts';

/**
 * Writes a manifest or blob body for the fake registry, applying at most one body fault.
 * Content-Length always announces the full (possibly faulty) body, so a reset or a stall is a
 * broken transfer from the client's point of view, not a short but complete response.
 */
export function serveBody(
  req: IncomingMessage,
  res: ServerResponse,
  status: number,
  headers: Record<string, string>,
  original: Buffer,
  fault: BodyFault | undefined,
): void {
  let body = original;
  if (fault?.kind === 'corrupt' && body.length > 0) {
    body = Buffer.from(original);
    const middle = Math.floor(body.length / 2);
    body[middle] = (body[middle] ?? 0) ^ 0xff;
  }
  if (fault?.kind === 'size') {
    body =
      fault.delta < 0
        ? original.subarray(0, Math.max(0, original.length + fault.delta))
        : Buffer.concat([original, randomBytes(fault.delta)]);
  }
  res.writeHead(status, { ...headers, 'content-length': String(body.length) });
  if (req.method === 'HEAD') {
    res.end();
    return;
  }
  switch (fault?.kind) {
    case 'reset':
      // Let the prefix reach the socket, then drop the connection mid-body.
      res.write(body.subarray(0, Math.min(fault.afterBytes, body.length)), () => {
        res.socket?.destroy();
      });
      return;
    case 'stall':
      // Nothing more is sent; the connection stays open until the client gives up.
      res.write(body.subarray(0, Math.min(fault.afterBytes, body.length)));
      return;
    case 'slow':
      void trickle(res, body, fault);
      return;
    default:
      res.end(body);
  }
}

async function trickle(
  res: ServerResponse,
  body: Buffer,
  { chunkBytes, delayMs, gate }: Extract<BodyFault, { kind: 'slow' }>,
): Promise<void> {
  let held = gate;
  for (let offset = 0; offset < body.length; offset += chunkBytes) {
    if (held && offset >= held.afterBytes) {
      await held.open;
      held = undefined;
    }
    if (res.destroyed) return;
    res.write(body.subarray(offset, offset + chunkBytes));
    await delay(delayMs);
  }
  res.end();
}
