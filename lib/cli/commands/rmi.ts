/** `image-cache rmi` (and `rm`): `docker rmi` over DELETE /images/{name}, one call per image. */
import { flagBoolean, parseArgs, UsageError } from '../args.ts';
import type { CliContext, Command } from '../context.ts';
import { ApiError, imagePath } from '../http.ts';

const usage = `Usage:  image-cache rmi [OPTIONS] IMAGE [IMAGE...]

Remove one or more images (aliases: rm, image rm)

Options:
  -f, --force      Force removal of the image (also removes its pins)
      --no-prune   Do not delete the blobs it frees now (the next GC does)
`;

/** One entry of Docker's image delete response. */
export interface DeleteResponseItem {
  Untagged?: string;
  Deleted?: string;
}

export const rmi: Command = {
  usage,
  async run(argv: string[], ctx: CliContext): Promise<number> {
    const args = parseArgs(argv, {
      force: { type: 'boolean', short: 'f' },
      'no-prune': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    });
    if (flagBoolean(args, 'help')) {
      ctx.stdout.write(usage);
      return 0;
    }
    if (args.positionals.length === 0) throw new UsageError('"rmi" requires at least 1 argument.');
    const force = flagBoolean(args, 'force');
    const errors: string[] = [];
    let fatal = false;
    for (const name of args.positionals) {
      try {
        const items = await ctx.client().json<DeleteResponseItem[]>(`/images/${imagePath(name)}`, {
          method: 'DELETE',
          query: {
            force: force ? '1' : undefined,
            noprune: flagBoolean(args, 'no-prune') ? '1' : undefined,
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
};
