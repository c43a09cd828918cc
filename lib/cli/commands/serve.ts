/** `image-cache serve`: run the HTTP server in this process until SIGINT/SIGTERM. */
import type { CliContext, Command } from '../context.ts';

const usage = `Usage:  image-cache serve [OPTIONS]

Run the image cache server (single node: data in a local folder)

Options:
      --host string   Address to listen on (default 127.0.0.1)
      --port int      Port to listen on (default 5115)
      --data string   Folder for blobs and the catalog
      --require-auth  Require bearer tokens (see 'image-cache token'); needed for a
                      --host other than loopback
Every option and environment variable is listed in docs/configuration.md.
`;

export const serve: Command = {
  usage,
  async run(argv: string[], ctx: CliContext): Promise<number> {
    if (argv.includes('--help') || argv.includes('-h')) {
      ctx.stdout.write(usage);
      return 0;
    }
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
};
