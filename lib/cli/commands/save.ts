/**
 * `image-cache save`: `docker save` over GET /images/get, streamed to a file or stdout, through
 * the presigned S3 download where the backend has one (after waiting for the export's job when
 * the server handed it over). `--pull` sends `pull=missing`: the server pulls what it lacks first.
 */
import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { UsageError } from '../args.ts';
import { byteCounter } from '../byte-counter.ts';
import { defineCommand } from '../command.ts';
import type { Command } from '../context.ts';
import { ProgressBar } from '../progress-bar.ts';
import { requestSave } from '../save-request.ts';

export const TTY_REFUSAL = 'cowardly refusing to save to a terminal. Use the -o flag or redirect';

export const save: Command = defineCommand({
  name: 'save',
  arguments: 'IMAGE [IMAGE...]',
  description: 'Save one or more images to a tar archive (streamed to STDOUT by default)',
  arity: { atLeast: 1 },
  flags: {
    output: { type: 'string', short: 'o', help: 'Write to a file, instead of STDOUT' },
    pull: {
      type: 'boolean',
      help: 'Pull images that are not cached (or whose tag is stale) first',
    },
  },
  async run({ flags: { output, pull }, args }, ctx) {
    if (output === '') throw new UsageError('the -o flag needs a file name');
    if (output === undefined && ctx.stdout.isTTY) {
      ctx.stderr.write(`${TTY_REFUSAL}\n`);
      return 1;
    }
    if (output === undefined && !(ctx.stdout instanceof Writable)) {
      throw new Error('standard output cannot take binary data here: use -o FILE');
    }

    // redirect=1: a backend with save exports (AWS) answers 307 to a presigned S3 GET, which
    // fetch follows; it drops the Authorization header on that cross-origin hop, as the
    // presigned URL needs. Other backends ignore it and stream the tarball.
    const response = await requestSave(ctx, args, { pull: pull === true });
    const length = Number.parseInt(response.headers.get('content-length') ?? '', 10);
    const total = Number.isSafeInteger(length) && length >= 0 ? length : undefined;
    const bar = new ProgressBar(ctx.stderr, { label: 'Saving', total, now: ctx.now });
    const counter = byteCounter((received) => bar.update(received), total);
    const body = response.body
      ? Readable.fromWeb(response.body as WebReadableStream<Uint8Array>)
      : Readable.from([]);

    try {
      if (output === undefined) {
        await pipeline(body, counter, ctx.stdout as unknown as Writable, { end: false });
      } else {
        await writeAtomically(output, (file) => pipeline(body, counter, file));
      }
    } catch (error) {
      bar.clear();
      const reason = error instanceof Error ? error.message : String(error);
      ctx.stderr.write(`Error: failed to save image: ${reason}\n`);
      return 1;
    }
    bar.done();
    return 0;
  },
});

/** Writes to a temp file beside `path` and renames it into place only when complete. */
async function writeAtomically(path: string, write: (file: Writable) => Promise<void>) {
  const temp = join(dirname(path), `.${basename(path)}.${randomBytes(4).toString('hex')}.tmp`);
  try {
    await write(createWriteStream(temp, { flags: 'wx', mode: 0o644 }));
    await rename(temp, path);
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
}
