/** `image-cache tag`: `docker tag` over POST /images/{name}/tag. */
import { UsageError } from '../args.ts';
import { defineCommand } from '../command.ts';
import type { Command } from '../context.ts';
import { imagePath } from '../http.ts';
import { splitReference } from '../names.ts';

export const tag: Command = defineCommand({
  name: 'tag',
  arguments: 'SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]',
  description: 'Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE',
  arity: { exactly: 2 },
  flags: {},
  async run({ args: [source = '', target = ''] }, ctx) {
    const ref = splitReference(target);
    // As the docker CLI: a digest names content, it cannot be created by tagging.
    if (ref.digest) throw new UsageError('refusing to create a tag with a digest reference');
    await ctx.client().request(`/images/${imagePath(source)}/tag`, {
      method: 'POST',
      query: { repo: ref.name, tag: ref.tag ?? 'latest' },
    });
    return 0;
  },
});
