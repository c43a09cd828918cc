/** `image-cache load`: `docker load` over POST /images/load, the tarball streamed from a file or stdin. */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { Readable, Transform, type TransformCallback } from 'node:stream';
import { flagBoolean, flagString, parseArgs, UsageError } from '../args.ts';
import type { CliContext, Command } from '../context.ts';
import { ApiError, ConnectionError, clientOptionsFromEnv, readJsonLines } from '../http.ts';
import { ProgressBar } from '../progress-bar.ts';

const usage = `Usage:  image-cache load [OPTIONS]

Load an image from a tar archive or STDIN (docker save, skopeo docker-archive, crane tarball,
OCI image layout; optionally gzip-compressed)

Options:
  -i, --input string   Read from tar archive file, instead of STDIN
  -q, --quiet          Suppress the load output
`;

export const load: Command = {
  usage,
  async run(argv: string[], ctx: CliContext): Promise<number> {
    const args = parseArgs(argv, {
      input: { type: 'string', short: 'i' },
      quiet: { type: 'boolean', short: 'q' },
      help: { type: 'boolean', short: 'h' },
    });
    if (flagBoolean(args, 'help')) {
      ctx.stdout.write(usage);
      return 0;
    }
    if (args.positionals.length > 0) throw new UsageError('"load" accepts no arguments.');
    const input = flagString(args, 'input');
    if (input === '') throw new UsageError('the -i flag needs a file name');
    const quiet = flagBoolean(args, 'quiet');
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

    const bar = new ProgressBar(ctx.stderr, { label: 'Loading', total, now: ctx.now });
    let sent = 0;
    const counter = new Transform({
      transform(chunk: Buffer, _enc: BufferEncoding, callback: TransformCallback) {
        sent += chunk.length;
        bar.update(sent);
        callback(null, chunk);
      },
    });
    source.on('error', (error) => counter.destroy(error));
    source.pipe(counter);

    const client = ctx.client();
    const token = clientOptionsFromEnv(ctx.env).token;
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
      const cause = (error as Error).cause as { code?: string; message?: string } | undefined;
      throw new ConnectionError(
        `Cannot send the archive to the image-cache server at ${client.baseUrl} (${cause?.code ?? cause?.message ?? (error as Error).message}).`,
      );
    }
    if (response.status >= 400) {
      bar.clear();
      const text = await response.text().catch(() => '');
      let message = text.trim() || `${response.status} ${response.statusText}`;
      try {
        message = (JSON.parse(text) as { message?: string }).message ?? message;
      } catch {
        // not JSON: show the text
      }
      throw new ApiError(response.status, message);
    }
    bar.done();
    for await (const line of readJsonLines<{ stream?: string; error?: string }>(response.body)) {
      if (line.error) {
        ctx.stderr.write(`${line.error}\n`);
        return 1;
      }
      if (line.stream) ctx.stdout.write(line.stream);
    }
    return 0;
  },
};
