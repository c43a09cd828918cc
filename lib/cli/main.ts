/**
 * `image-cache`: a thin client over the cache's Docker-compatible HTTP API, plus `serve`.
 * Dispatches the verb, maps errors to docker-like messages and exit codes (1 for failures,
 * 2 for wrong usage).
 */
import { ImageCacheError } from '../errors.ts';
import { UsageError } from './args.ts';
import { gc } from './commands/gc.ts';
import { history } from './commands/history.ts';
import { images } from './commands/images.ts';
import { inspect } from './commands/inspect.ts';
import { load } from './commands/load.ts';
import { pin, pins, unpin } from './commands/pin.ts';
import { prune } from './commands/prune.ts';
import { pull } from './commands/pull.ts';
import { rmi } from './commands/rmi.ts';
import { save } from './commands/save.ts';
import { serve } from './commands/serve.ts';
import { stats } from './commands/stats.ts';
import { tag } from './commands/tag.ts';
import { token } from './commands/token.ts';
import { warm } from './commands/warm.ts';
import { watch } from './commands/watch.ts';
import type { CliContext, Command } from './context.ts';
import { ApiClient, ApiError, ConnectionError, clientOptionsFromEnv, DEFAULT_URL } from './http.ts';

export const USAGE = `Usage:  image-cache COMMAND [OPTIONS]

A team-wide cache of container images with a Docker Engine compatible API

Commands:
  serve       Run the server
  pull        Download an image into the cache
  warm        Pull a list of images into the cache ahead of time (-f images.txt)
  watch       Keep tags fresh: check them on a schedule, pull when they move
  images      List images (aliases: ls, image ls)
  history     Show the history of an image
  inspect     Display detailed information on one or more images
  tag         Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
  rmi         Remove one or more images (alias: rm)
  prune       Remove unused images (-a: all that are not pinned)
  pin         Pin an image so that prune and retention keep it
  unpin       Remove a pin
  pins        List pins
  gc          Delete blobs no image needs, and print the report
  stats       Show hit ratio, pulls saved, traffic and storage against the budget
  save        Save one or more images to a tar archive
  load        Load an image from a tar archive or STDIN
  token       Create, list and revoke API tokens (on the server's storage)

Environment:
  IMAGE_CACHE_URL     Server address (default ${DEFAULT_URL})
  IMAGE_CACHE_TOKEN   Bearer token sent as the Authorization header

Run 'image-cache COMMAND --help' for more information on a command.
`;

const COMMANDS: Record<string, Command> = {
  serve,
  pull,
  warm,
  watch,
  images,
  ls: images,
  list: images,
  history,
  inspect,
  save,
  load,
  tag,
  rmi,
  rm: rmi,
  prune,
  pin,
  unpin,
  pins,
  gc,
  stats,
  token,
};

/** `image-cache image ls` and friends: the docker management-command spelling. */
const IMAGE_SUBCOMMANDS: Record<string, Command> = {
  ls: images,
  list: images,
  pull,
  history,
  inspect,
  save,
  load,
  tag,
  rm: rmi,
  prune,
};

function resolve(argv: readonly string[]): { command?: Command; rest: string[]; verb: string } {
  const [verb = '', ...rest] = argv;
  if (verb === 'image') {
    const [sub = '', ...subRest] = rest;
    return { command: IMAGE_SUBCOMMANDS[sub], rest: subRest, verb: `image ${sub}`.trim() };
  }
  return { command: Object.hasOwn(COMMANDS, verb) ? COMMANDS[verb] : undefined, rest, verb };
}

export function defaultContext(): CliContext {
  let client: ApiClient | undefined;
  return {
    stdout: process.stdout,
    stderr: process.stderr,
    env: process.env,
    client: () => {
      client ??= new ApiClient(clientOptionsFromEnv(process.env));
      return client;
    },
    now: () => Date.now(),
  };
}

export async function main(argv: readonly string[], ctx: CliContext): Promise<number> {
  const [first] = argv;
  if (first === undefined || first === '--help' || first === '-h' || first === 'help') {
    const topic = first === 'help' ? argv[1] : undefined;
    const command = topic ? resolve(argv.slice(1)).command : undefined;
    if (topic && !command) {
      ctx.stderr.write(`image-cache: unknown command "${topic}"\n\n${USAGE}`);
      return 2;
    }
    // No verb at all is a usage error, as with docker.
    (first === undefined ? ctx.stderr : ctx.stdout).write(command ? command.usage : USAGE);
    return first === undefined ? 2 : 0;
  }
  if (first === '--version' || first === '-v') {
    ctx.stdout.write('image-cache 0.1.0\n');
    return 0;
  }
  const { command, rest, verb } = resolve(argv);
  if (!command) {
    ctx.stderr.write(`image-cache: unknown command "${verb}"\n\n${USAGE}`);
    return 2;
  }
  try {
    return await command.run(rest, ctx);
  } catch (error) {
    return report(error, verb, ctx);
  }
}

function report(error: unknown, verb: string, ctx: CliContext): number {
  if (error instanceof UsageError) {
    ctx.stderr.write(`${error.message}\nSee 'image-cache ${verb} --help'.\n`);
    return 2;
  }
  if (error instanceof ApiError) {
    ctx.stderr.write(`Error response from daemon: ${error.message}\n`);
    return 1;
  }
  if (error instanceof ConnectionError) {
    ctx.stderr.write(`${error.message}\n`);
    return 1;
  }
  // By name: importing config.ts here would load server code into every client command.
  if (error instanceof Error && error.name === 'ConfigError') {
    ctx.stderr.write(`Error: ${error.message}\nSee 'image-cache ${verb} --help'.\n`);
    return 2;
  }
  if (error instanceof ImageCacheError) {
    ctx.stderr.write(`Error: ${error.message}\n`);
    return error.code === 'INVALID_ARGUMENT' ? 2 : 1;
  }
  ctx.stderr.write(`Error: ${error instanceof Error ? error.message : String(error)}\n`);
  return 1;
}
