/** `image-cache inspect`: `docker image inspect` over GET /images/{name}/json. */
import { defineCommand } from '../command.ts';
import type { Command } from '../context.ts';
import { ApiError, imagePath } from '../http.ts';
import { parseTemplate, renderTemplate } from '../template.ts';

export const inspect: Command = defineCommand({
  name: 'inspect',
  arguments: 'IMAGE [IMAGE...]',
  description: 'Display detailed information on one or more images',
  arity: { atLeast: 1 },
  flags: {
    format: {
      type: 'string',
      short: 'f',
      help: `Format output using a custom template:
'json':             Print in JSON format (default)
'TEMPLATE':         Print output using the given Go template`,
    },
  },
  async run({ flags: { format }, args }, ctx) {
    const template = format && format !== 'json' ? parseTemplate(format) : undefined;

    const found: unknown[] = [];
    const errors: string[] = [];
    for (const name of args) {
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
});
