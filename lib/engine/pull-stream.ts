import { PassThrough } from 'node:stream';
import { errorBody } from '../errors.ts';
import type { ProgressMessage } from '../pull.ts';
import type { HttpResponse } from './http.ts';

/**
 * Runs a pull and answers with Docker's progress stream. The status line is held back until the
 * first message, so failures found while resolving (bad reference, unknown tag, registry not
 * allowed, upstream down) still get their own HTTP status; later failures become an
 * `errorDetail` line, as the daemon writes them. `closed` aborts when the body is closed: the
 * server destroys it when the client goes away, so a run that only follows a job can stop.
 */
export function streamPull(
  run: (onProgress: (m: ProgressMessage) => void, closed: AbortSignal) => Promise<unknown>,
): Promise<HttpResponse> {
  const out = new PassThrough();
  const closed = new AbortController();
  out.once('close', () => closed.abort());
  return new Promise<HttpResponse>((resolve, reject) => {
    let started = false;
    const start = () => {
      if (started) return;
      started = true;
      resolve({ status: 200, headers: { 'Content-Type': 'application/json' }, body: out });
    };
    run((message) => {
      start();
      out.write(`${JSON.stringify(withProgressBar(message))}\r\n`);
    }, closed.signal).then(
      () => {
        start();
        out.end();
      },
      (error: unknown) => {
        if (error instanceof PullHandedOver) {
          start();
          out.end(`${JSON.stringify(error.line)}\r\n`);
          return;
        }
        if (!started) {
          reject(error);
          return;
        }
        const { body } = errorBody(error);
        out.end(`${JSON.stringify({ errorDetail: body, error: body.message })}\r\n`);
      },
    );
  });
}

/**
 * Ends a pull stream with a final line of its own, even before any progress was sent: the
 * pull goes on as a background job the client can follow (lib/engine/job-pull.ts).
 */
export class PullHandedOver extends Error {
  readonly line: { error: string; errorDetail: { message: string } } & Record<string, unknown>;
  constructor(line: PullHandedOver['line']) {
    super(line.error);
    this.line = line;
  }
}

/** Adds the `progress` text Docker sends beside progressDetail, for curl users. */
function withProgressBar(message: ProgressMessage): ProgressMessage & { progress?: string } {
  const detail = message.progressDetail;
  if (!detail?.total || detail.current === undefined) return message;
  return { ...message, progress: progressBar(detail.current, detail.total) };
}

export function progressBar(current: number, total: number): string {
  const width = 50;
  const filled = Math.min(width, Math.floor((current / total) * width));
  const bar =
    filled >= width ? '='.repeat(width) : `${'='.repeat(filled)}>${' '.repeat(width - filled - 1)}`;
  return `[${bar}] ${humanBytes(current).padStart(8)}/${humanBytes(total)}`;
}

function humanBytes(n: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let value = n;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  return `${unit === 0 ? value : value.toFixed(value < 10 ? 3 : value < 100 ? 2 : 1)}${units[unit]}`;
}
