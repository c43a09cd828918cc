/** `image-cache tag`: `docker tag` over POST /images/{name}/tag. */
import { flagBoolean, parseArgs, UsageError } from '../args.ts';
import type { CliContext, Command } from '../context.ts';
import { imagePath } from '../http.ts';
import { splitReference } from '../names.ts';

const usage = `Usage:  image-cache tag SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]

Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
`;

export const tag: Command = {
  usage,
  async run(argv: string[], ctx: CliContext): Promise<number> {
    const args = parseArgs(argv, { help: { type: 'boolean', short: 'h' } });
    if (flagBoolean(args, 'help')) {
      ctx.stdout.write(usage);
      return 0;
    }
    const [source, target, ...extra] = args.positionals;
    if (!source || !target || extra.length > 0) {
      throw new UsageError('"tag" requires exactly 2 arguments.');
    }
    const ref = splitReference(target);
    // As the docker CLI: a digest names content, it cannot be created by tagging.
    if (ref.digest) throw new UsageError('refusing to create a tag with a digest reference');
    await ctx.client().request(`/images/${imagePath(source)}/tag`, {
      method: 'POST',
      query: { repo: ref.name, tag: ref.tag ?? 'latest' },
    });
    return 0;
  },
};
