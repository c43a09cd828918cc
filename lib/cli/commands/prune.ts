/** `image-cache prune`: `docker image prune` over POST /images/prune, with docker's prompt. */
import { defineCommand } from '../command.ts';
import type { Command } from '../context.ts';
import { humanSize } from '../format.ts';
import { filterMap } from './images.ts';
import type { DeleteResponseItem } from './rmi.ts';

const DANGLING_WARNING = `WARNING! This will remove all dangling images.
Are you sure you want to continue?`;
// Docker says "without at least one container associated to them"; pins are the cache's containers.
const ALL_WARNING = `WARNING! This will remove all images that are not pinned.
Are you sure you want to continue?`;

interface PruneReport {
  ImagesDeleted?: DeleteResponseItem[] | null;
  SpaceReclaimed: number;
}

export const prune: Command = defineCommand({
  name: 'prune',
  description: 'Remove unused images (aliases: image prune)',
  arity: { none: true },
  flags: {
    all: {
      type: 'boolean',
      short: 'a',
      help: 'Remove all images that are not pinned, not just dangling ones',
    },
    filter: {
      type: 'list',
      value: 'filter',
      help: 'Provide filter values (e.g. "until=<timestamp>")',
    },
    force: { type: 'boolean', short: 'f', help: 'Do not prompt for confirmation' },
  },
  async run({ flags }, ctx) {
    const all = flags.all;
    const filters = filterMap(flags.filter);
    filters.dangling = { [String(!all)]: true };

    if (!flags.force) {
      ctx.stdout.write(`${all ? ALL_WARNING : DANGLING_WARNING} [y/N] `);
      const answer = await readLine(process.stdin);
      // Declining prints nothing more and is not an error, as with docker.
      if (!/^y(es)?$/i.test(answer.trim())) return 0;
    }

    const report = await ctx.client().json<PruneReport>('/images/prune', {
      method: 'POST',
      query: { filters: JSON.stringify(filters) },
    });
    const deleted = report.ImagesDeleted ?? [];
    if (deleted.length > 0) {
      const lines = deleted.map((d) =>
        d.Untagged ? `untagged: ${d.Untagged}` : `deleted: ${d.Deleted}`,
      );
      ctx.stdout.write(`Deleted Images:\n${lines.join('\n')}\n\n`);
    }
    ctx.stdout.write(`Total reclaimed space: ${humanSize(report.SpaceReclaimed)}\n`);
    return 0;
  },
});

/** One line of input (or whatever came before the end of input). */
function readLine(input: NodeJS.ReadStream): Promise<string> {
  return new Promise((resolve) => {
    let buffer = '';
    const finish = (line: string) => {
      input.off('data', onData);
      input.off('end', onEnd);
      input.pause();
      resolve(line);
    };
    const onData = (chunk: Buffer | string) => {
      buffer += chunk.toString();
      const newline = buffer.indexOf('\n');
      if (newline !== -1) finish(buffer.slice(0, newline));
    };
    const onEnd = () => finish(buffer);
    input.on('data', onData);
    input.on('end', onEnd);
  });
}
