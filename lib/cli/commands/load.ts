/** `image-cache load`: `docker load` over POST /images/load, the tarball streamed from a file or stdin. */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { UsageError } from '../args.ts';
import { byteCounter } from '../byte-counter.ts';
import { defineCommand } from '../command.ts';
import type { CliContext, Command } from '../context.ts';
import {
  type ApiClient,
  ApiError,
  apiError,
  ConnectionError,
  causeText,
  clientOptionsFromEnv,
  readJsonLines,
} from '../http.ts';
import { type JobJson, waitForJob } from '../job-wait.ts';
import { ProgressBar } from '../progress-bar.ts';

const description = `Load an image from a tar archive or STDIN (docker save, skopeo docker-archive, crane tarball,
OCI image layout; optionally gzip-compressed)

A file larger than the server takes in one request (API Gateway: 10 MB) is uploaded straight
to storage through presigned URLs, then loaded from there, when the server offers it.
`;

export const load: Command = defineCommand({
  name: 'load',
  description,
  arity: { none: true },
  flags: {
    input: { type: 'string', short: 'i', help: 'Read from tar archive file, instead of STDIN' },
    quiet: { type: 'boolean', short: 'q', help: 'Suppress the load output' },
  },
  async run({ flags: { input, quiet } }, ctx) {
    if (input === '') throw new UsageError('the -i flag needs a file name');
    let source: Readable;
    let total: number | undefined;
    if (input === undefined) {
      if (process.stdin.isTTY) {
        ctx.stderr.write('requested load from stdin, but stdin is empty\n');
        return 1;
      }
      source = process.stdin;
    } else {
      try {
        total = (await stat(input)).size;
      } catch (error) {
        ctx.stderr.write(`Error: cannot read ${input}: ${(error as Error).message}\n`);
        return 1;
      }
      source = createReadStream(input, { highWaterMark: 1024 * 1024 });
    }

    const client = ctx.client();
    const token = clientOptionsFromEnv(ctx.env).token;
    // Past what API Gateway accepts: upload to storage directly when the server offers it.
    if (input !== undefined && total !== undefined && total > DIRECT_LOAD_LIMIT) {
      source.destroy();
      const code = await loadThroughStorage(ctx, client, token, input, total, quiet);
      if (code !== undefined) return code;
      source = createReadStream(input, { highWaterMark: 1024 * 1024 });
    }

    const bar = new ProgressBar(ctx.stderr, { label: 'Loading', total, now: ctx.now });
    const counter = byteCounter((sent) => bar.update(sent));
    source.on('error', (error) => counter.destroy(error));
    source.pipe(counter);

    let response: Response;
    try {
      response = await fetch(client.url('/images/load', { quiet: quiet ? '1' : '0' }), {
        method: 'POST',
        headers: {
          'content-type': 'application/x-tar',
          ...(total !== undefined ? { 'content-length': String(total) } : {}),
          ...(token ? { authorization: `Bearer ${token}` } : {}),
        },
        body: Readable.toWeb(counter) as ReadableStream<Uint8Array>,
        duplex: 'half',
      } as RequestInit);
    } catch (error) {
      bar.clear();
      throw new ConnectionError(
        `Cannot send the archive to the image-cache server at ${client.baseUrl} (${causeText(error)}).`,
      );
    }
    if (response.status === 413 && input !== undefined && total !== undefined) {
      // The front door (API Gateway's 10 MB, Lambda's 6 MB event) refused the body: take the
      // presigned path instead.
      bar.clear();
      source.destroy();
      const refusal = await apiError(response);
      const code = await loadThroughStorage(ctx, client, token, input, total, quiet);
      if (code !== undefined) return code;
      throw new ApiError(413, `${refusal.message} (and the server offers no presigned uploads)`);
    }
    if (response.status >= 400) {
      bar.clear();
      throw await apiError(response);
    }
    bar.done();
    return printLoaded(ctx, response);
  },
});

/**
 * Larger files try the presigned path first. A Lambda behind API Gateway or a function URL gets
 * the body inside a 6 MB event, base64-encoded: about 4.5 MB of file. Against a server without
 * presigned uploads the detour costs one 404 before the direct load.
 */
export const DIRECT_LOAD_LIMIT = 4 * 1024 * 1024;

async function printLoaded(ctx: CliContext, response: Response): Promise<number> {
  for await (const line of readJsonLines<{ stream?: string; error?: string }>(response.body)) {
    if (line.error) {
      ctx.stderr.write(`${line.error}\n`);
      return 1;
    }
    if (line.stream) ctx.stdout.write(line.stream);
  }
  return 0;
}

interface UploadTicket {
  id: string;
  url?: string;
  parts?: { number: number; url: string }[];
  partSize: number;
  commit: string;
}

/**
 * `POST /cache/loads?size=N`, PUT the file (or each part) to the presigned URLs, then commit.
 * Undefined when the server offers no presigned uploads (404), so the caller loads directly.
 * The storage URLs carry their own signature: no Authorization header goes to them.
 */
async function loadThroughStorage(
  ctx: CliContext,
  client: ApiClient,
  token: string | undefined,
  input: string,
  total: number,
  quiet: boolean,
): Promise<number | undefined> {
  let ticket: UploadTicket;
  try {
    ticket = await client.json<UploadTicket>('/cache/loads', {
      method: 'POST',
      query: { size: String(total) },
    });
  } catch (error) {
    if (error instanceof ApiError && (error.status === 404 || error.status === 501)) {
      return undefined;
    }
    throw error;
  }
  const parts = ticket.parts ?? (ticket.url ? [{ number: 1, url: ticket.url }] : []);
  if (parts.length === 0) throw new ApiError(500, 'the server returned no upload URL');
  const bar = new ProgressBar(ctx.stderr, { label: 'Uploading', total, now: ctx.now });
  const uploaded: { number: number; etag: string }[] = [];
  let sent = 0;
  try {
    for (const part of parts) {
      const start = (part.number - 1) * ticket.partSize;
      const end = Math.min(total, start + ticket.partSize);
      const base = sent;
      const counter = byteCounter((partSent) => bar.update(base + partSent));
      const file = createReadStream(input, { start, end: end - 1, highWaterMark: 1024 * 1024 });
      file.on('error', (error) => counter.destroy(error));
      file.pipe(counter);
      let response: Response;
      try {
        response = await fetch(part.url, {
          method: 'PUT',
          headers: { 'content-length': String(end - start) },
          body: Readable.toWeb(counter) as ReadableStream<Uint8Array>,
          duplex: 'half',
        } as RequestInit);
      } catch (error) {
        throw new ConnectionError(
          `Cannot upload part ${part.number} to storage (${causeText(error)}).`,
        );
      }
      const text = await response.text().catch(() => '');
      if (!response.ok) {
        throw new ApiError(
          response.status,
          `storage refused part ${part.number} of the upload: ${response.status} ${text.slice(0, 300)}`.trim(),
        );
      }
      uploaded.push({ number: part.number, etag: response.headers.get('etag') ?? '' });
      sent = base + (end - start);
    }
  } catch (error) {
    bar.clear();
    throw error;
  }
  bar.done();
  const commit = await fetch(client.url(ticket.commit, { quiet: quiet ? '1' : '0' }), {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      ...(token ? { authorization: `Bearer ${token}` } : {}),
    },
    body: JSON.stringify(ticket.parts ? { parts: uploaded } : {}),
  }).catch((error: unknown) => {
    throw new ConnectionError(
      `Cannot reach the image-cache server at ${client.baseUrl} to commit the upload (${(error as Error).message}).`,
    );
  });
  if (commit.status >= 400) throw await apiError(commit);
  if (commit.status === 202) {
    // The load outlived the server's time limit and goes on as a job: wait for it there.
    const pending = (await commit.json()) as JobJson;
    const job = await waitForJob(client, pending.url);
    if (job.status === 'failed') {
      ctx.stderr.write(`${job.error?.message ?? 'the load failed'}\n`);
      return 1;
    }
    if (job.result?.kind === 'load') {
      for (const message of job.result.messages) ctx.stdout.write(`${message}\n`);
    }
    return 0;
  }
  return printLoaded(ctx, commit);
}
