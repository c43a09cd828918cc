/** `image-cache pull`: `docker pull` over POST /images/create, progress rendered live. */
import { UsageError } from '../args.ts';
import { defineCommand } from '../command.ts';
import type { Command } from '../context.ts';
import { readJsonLines } from '../http.ts';
import { type HandoverLine, waitForJob } from '../job-wait.ts';
import { fullReference, splitReference } from '../names.ts';
import { type JsonMessage, ProgressStreamError, PullProgressRenderer } from '../pull-progress.ts';

const PLATFORM = /^[a-z0-9_.-]+\/[a-z0-9_.-]+(\/[a-z0-9_.-]+)?$/i;

export const pull: Command = defineCommand({
  name: 'pull',
  arguments: 'NAME[:TAG|@DIGEST]',
  description: 'Download an image into the cache',
  arity: { exactly: 1 },
  flags: {
    platform: {
      type: 'string',
      help: 'Set platform if server is multi-platform capable (os/arch[/variant])',
    },
    quiet: { type: 'boolean', short: 'q', help: 'Suppress verbose output' },
  },
  async run({ flags, args: [name = ''] }, ctx) {
    const platform = flags.platform || undefined;
    if (platform && !PLATFORM.test(platform)) {
      throw new UsageError(`invalid platform "${platform}": expected os/arch[/variant]`);
    }
    const quiet = flags.quiet;
    const ref = splitReference(name);
    if (!ref.tag && !ref.digest) {
      ref.tag = 'latest';
      if (!quiet) ctx.stdout.write('Using default tag: latest\n');
    }

    const response = await ctx.client().request('/images/create', {
      method: 'POST',
      query: { fromImage: ref.name, tag: ref.digest ?? ref.tag, platform },
    });
    const renderer = new PullProgressRenderer(quiet ? { write: () => true } : ctx.stdout, {
      tty: ctx.stdout.isTTY === true,
      ...(ctx.stdout.columns ? { columns: ctx.stdout.columns } : {}),
      now: ctx.now,
    });
    let handover: HandoverLine['job'];
    try {
      for await (const message of readJsonLines<JsonMessage & HandoverLine>(response.body)) {
        // The server's time ran out: the pull goes on as a job, follow it there.
        if (message.job) {
          handover = message.job;
          break;
        }
        renderer.render(message);
      }
      if (handover) {
        const job = await waitForJob(ctx.client(), handover.url, (m) => renderer.render(m));
        if (job.status === 'failed') {
          throw new ProgressStreamError(job.error?.message ?? 'the pull failed');
        }
      }
    } catch (error) {
      if (error instanceof ProgressStreamError) {
        ctx.stderr.write(`${error.message}\n`);
        return 1;
      }
      throw error;
    }
    ctx.stdout.write(`${fullReference(ref)}\n`);
    return 0;
  },
});
