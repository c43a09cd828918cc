/** `image-cache rmi` (and `rm`): `docker rmi` over DELETE /images/{name}, one call per image. */
import { defineCommand } from '../command.ts';
import type { Command } from '../context.ts';
import { ApiError, imagePath } from '../http.ts';

/** One entry of Docker's image delete response. */
export interface DeleteResponseItem {
  Untagged?: string;
  Deleted?: string;
}

export const rmi: Command = defineCommand({
  name: 'rmi',
  arguments: 'IMAGE [IMAGE...]',
  description: 'Remove one or more images (aliases: rm, image rm)',
  arity: { atLeast: 1 },
  flags: {
    force: {
      type: 'boolean',
      short: 'f',
      help: 'Force removal of the image (also removes its pins)',
    },
    'no-prune': {
      type: 'boolean',
      help: 'Do not delete the blobs it frees now (the next GC does)',
    },
  },
  async run({ flags, args }, ctx) {
    const force = flags.force;
    const errors: string[] = [];
    let fatal = false;
    for (const name of args) {
      try {
        const items = await ctx.client().json<DeleteResponseItem[]>(`/images/${imagePath(name)}`, {
          method: 'DELETE',
          query: {
            force: force ? '1' : undefined,
            noprune: flags['no-prune'] ? '1' : undefined,
          },
        });
        for (const item of items) {
          ctx.stdout.write(
            item.Deleted ? `Deleted: ${item.Deleted}\n` : `Untagged: ${item.Untagged}\n`,
          );
        }
      } catch (error) {
        if (!(error instanceof ApiError)) throw error;
        // As docker: with -f, an image that is not there is worth a message, not a failure.
        if (error.status !== 404 || !force) fatal = true;
        errors.push(`Error response from daemon: ${error.message}`);
      }
    }
    if (errors.length > 0) ctx.stderr.write(`${errors.join('\n')}\n`);
    return fatal ? 1 : 0;
  },
});
