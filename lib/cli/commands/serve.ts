/** `image-cache serve`: run the HTTP server in this process until SIGINT/SIGTERM. */
import { definePassThrough } from '../command.ts';
import type { CliContext, Command } from '../context.ts';

/**
 * The flags belong to the configuration (lib/config), which parses `serve`'s arguments with the
 * environment in one place; they are declared here for the help alone.
 */
export const serve: Command = definePassThrough({
  name: 'serve',
  description: 'Run the image cache server (single node: data in a local folder)',
  flags: {
    host: { type: 'string', help: 'Address to listen on (default 127.0.0.1)' },
    port: { type: 'string', value: 'int', help: 'Port to listen on (default 5115)' },
    data: { type: 'string', help: 'Folder for blobs and the catalog' },
    'require-auth': {
      type: 'boolean',
      help: "Require bearer tokens (see 'image-cache token'); needed for a\n--host other than loopback",
    },
  },
  footer: 'Every option and environment variable is listed in docs/configuration.md.',
  async run(argv: string[], ctx: CliContext): Promise<number> {
    // Loaded here, not at the top: client verbs must not pay for the server's dependencies.
    const [{ parseServeArgs }, { startServer }] = await Promise.all([
      import('../../config.ts'),
      import('../../server.ts'),
    ]);
    const config = parseServeArgs(argv, ctx.env);
    const server = await startServer(config);
    ctx.stdout.write(`image-cache listening on ${server.url}\n`);

    return await new Promise<number>((resolve) => {
      let stopping = false;
      const stop = (signal: NodeJS.Signals) => {
        if (stopping) {
          // A second signal: the user does not want to wait for connections to drain.
          ctx.stderr.write(`${signal} again: exiting without waiting\n`);
          process.exit(130);
        }
        stopping = true;
        server.close().then(
          () => resolve(0),
          (error: unknown) => {
            ctx.stderr.write(
              `error while closing: ${error instanceof Error ? error.message : error}\n`,
            );
            resolve(1);
          },
        );
      };
      process.on('SIGINT', stop);
      process.on('SIGTERM', stop);
    });
  },
});
