/** `image-cache inspect`: `docker image inspect` over GET /images/{name}/json. */
import { flagBoolean, flagString, parseArgs, UsageError } from '../args.ts';
import type { CliContext, Command } from '../context.ts';
import { ApiError, imagePath } from '../http.ts';
import { parseTemplate, renderTemplate } from '../template.ts';

const usage = `Usage:  image-cache inspect [OPTIONS] IMAGE [IMAGE...]

Display detailed information on one or more images

Options:
  -f, --format string   Format output using a custom template:
                        'json':             Print in JSON format (default)
                        'TEMPLATE':         Print output using the given Go template
`;

export const inspect: Command = {
  usage,
  async run(argv: string[], ctx: CliContext): Promise<number> {
    const args = parseArgs(argv, {
      format: { type: 'string', short: 'f' },
      help: { type: 'boolean', short: 'h' },
    });
    if (flagBoolean(args, 'help')) {
      ctx.stdout.write(usage);
      return 0;
    }
    if (args.positionals.length === 0) {
      throw new UsageError('"inspect" requires at least 1 argument.');
    }
    const format = flagString(args, 'format');
    const template = format && format !== 'json' ? parseTemplate(format) : undefined;

    const found: unknown[] = [];
    const errors: string[] = [];
    for (const name of args.positionals) {
      try {
        found.push(await ctx.client().json<unknown>(`/images/${imagePath(name)}/json`));
      } catch (error) {
        // Like docker: report missing images after printing the ones that exist.
        if (error instanceof ApiError && error.status === 404) {
          errors.push(`Error: No such image: ${name}`);
          continue;
        }
        throw error;
      }
    }
    if (template) {
      ctx.stdout.write(found.map((image) => `${renderTemplate(template, image)}\n`).join(''));
    } else {
      ctx.stdout.write(found.length === 0 ? '[]\n' : `${JSON.stringify(found, null, 4)}\n`);
    }
    for (const error of errors) ctx.stderr.write(`${error}\n`);
    return errors.length > 0 ? 1 : 0;
  },
};
