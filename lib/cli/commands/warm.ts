/**
 * `image-cache warm -f images.txt [--wait]`: a CI step before the build names the images it will
 * need, and the cache pulls them (one job each, joined when already running) over
 * POST /cache/warm. With --wait it follows every job to its end, one line per image.
 */
import { readFile } from 'node:fs/promises';
import { UsageError } from '../args.ts';
import { defineCommand } from '../command.ts';
import type { CliContext, Command } from '../context.ts';
import { waitForJob } from '../job-wait.ts';

/** One entry of the list: what POST /cache/warm takes. */
export interface WarmImage {
  reference: string;
  platform?: string;
}

/** One job of the answer. */
interface WarmJob extends WarmImage {
  id: string;
  url: string;
}

const description = `Pull a list of images into the cache ahead of time

The file holds one reference a line; blank lines and lines starting with # are skipped. A
platform may follow the reference: "nginx:1.27 --platform linux/arm64". Each image is pulled by
one background job, whoever else asks for it; the job ids are printed.`;

export const warm: Command = defineCommand({
  name: 'warm',
  description,
  arity: { none: true },
  flags: {
    file: { type: 'string', short: 'f', help: 'Read the references from a file' },
    wait: { type: 'boolean', help: 'Follow every pull to its end; exit 1 if one failed' },
  },
  async run({ flags }, ctx) {
    if (!flags.file) throw new UsageError('the -f flag needs a file of image references');
    const text = await readFile(flags.file, 'utf8');
    const images = parseWarmFile(text);
    if (images.length === 0) throw new UsageError(`${flags.file} names no images`);
    const client = ctx.client();
    const { jobs } = await client.json<{ jobs: WarmJob[] }>('/cache/warm', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ images }),
    });
    for (const job of jobs) ctx.stdout.write(`${job.id}  ${label(job)}\n`);
    if (!flags.wait) return 0;
    const ended = await Promise.all(jobs.map((job) => follow(ctx, job)));
    return ended.every(Boolean) ? 0 : 1;
  },
});

/** Waits for one job and prints how it ended; answers whether it succeeded. */
async function follow(ctx: CliContext, job: WarmJob): Promise<boolean> {
  const ended = await waitForJob(ctx.client(), job.url);
  if (ended.status === 'succeeded') {
    const id = ended.result?.kind === 'pull' ? ` ${ended.result.imageId}` : '';
    ctx.stdout.write(`Pulled: ${label(job)}${id}\n`);
    return true;
  }
  ctx.stderr.write(`Failed: ${label(job)}: ${ended.error?.message ?? 'the pull failed'}\n`);
  return false;
}

const label = (image: WarmImage) =>
  image.platform ? `${image.reference} (${image.platform})` : image.reference;

/** `ref`, `ref --platform p` or `ref --platform=p` a line; the server checks each reference. */
export function parseWarmFile(text: string): WarmImage[] {
  const images: WarmImage[] = [];
  for (const [index, raw] of text.split(/\r?\n/).entries()) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const [reference = '', ...rest] = line.split(/\s+/);
    const options = rest.join(' ');
    const platform = /^--platform(?:=|\s+)(\S+)$/.exec(options)?.[1];
    if (options !== '' && !platform) {
      throw new UsageError(
        `line ${index + 1}: expected "REFERENCE [--platform os/arch]", got ${JSON.stringify(line)}`,
      );
    }
    images.push({ reference, ...(platform && { platform }) });
  }
  return images;
}
