/**
 * `image-cache token create|ls|revoke`: manage API tokens. These write to the backend directly
 * (`--data DIR`, or `--backend aws` with IMAGE_CACHE_BUCKET and IMAGE_CACHE_TABLE), not over
 * HTTP: the first admin token cannot be created through an API that already wants one.
 */
import type { Composition } from '../../composition.ts';
import { UsageError } from '../args.ts';
import { defineCommand, type FlagValues, jsonOnly } from '../command.ts';
import type { CliContext, Command } from '../context.ts';
import { table } from '../format.ts';
import { jsonLines } from '../template.ts';

const TOKEN_FLAGS = {
  scope: { type: 'string', help: 'read, pull, write or admin (create)' },
  name: { type: 'string', help: 'A name to know the token by (create)' },
  data: { type: 'string', help: 'Folder of the embedded backend (default ./data)' },
  backend: {
    type: 'string',
    help: 'embedded or aws (with IMAGE_CACHE_BUCKET and IMAGE_CACHE_TABLE)',
  },
  format: { type: 'string', help: "'json' for one JSON object per line (ls)" },
} as const;

type TokenFlags = FlagValues<typeof TOKEN_FLAGS>;

export const token: Command = defineCommand({
  name: 'token',
  arguments: 'COMMAND',
  description: `Manage the API tokens of a cache (written to its storage directly, not over HTTP)

Commands:
  create --scope SCOPE [--name NAME]   Create a token and print it (shown only this once)
  ls                                   List tokens (never the tokens themselves)
  revoke NAME|ID                       Revoke a token

Scopes (each includes the ones before it):
  read    list, inspect, history, save
  pull    also fetch images from upstream registries
  write   also load, tag, remove, pin
  admin   also prune, garbage collection, retention`,
  arity: { any: true },
  flags: TOKEN_FLAGS,
  async run({ flags, args: [verb, ...rest] }, ctx) {
    if (verb === undefined) {
      // No command at all is wrong usage: the help, on stderr, as for `image-cache` alone.
      ctx.stderr.write(token.usage);
      return 2;
    }
    const action = ACTIONS[verb];
    if (!action) throw new UsageError(`unknown token command "${verb}"`);
    const composition = await openBackend(flags, ctx);
    try {
      return await action(flags, rest, composition, ctx);
    } finally {
      await composition.close();
    }
  },
});

type Action = (
  flags: TokenFlags,
  rest: string[],
  composition: Composition,
  ctx: CliContext,
) => Promise<number>;

const create: Action = async (flags, rest, { context }, ctx) => {
  if (rest.length > 0) throw new UsageError('"token create" accepts no arguments');
  const scopeText = flags.scope;
  if (!scopeText)
    throw new UsageError('"token create" requires --scope (read, pull, write, admin)');
  const { createToken, parseScope } = await import('../../auth/tokens.ts');
  const name = flags.name;
  const { token: secret, record } = await createToken(
    context.tokens,
    { scope: parseScope(scopeText), ...(name !== undefined && { name }) },
    ctx.now(),
  );
  // The token alone on stdout, so `TOKEN=$(image-cache token create ...)` captures just it.
  ctx.stdout.write(`${secret}\n`);
  ctx.stderr.write(
    `Created token ${record.name} (id ${record.id}, scope ${record.scope}). ` +
      'It is shown only now: store it.\n',
  );
  return 0;
};

const list: Action = async (flags, rest, { context }, ctx) => {
  if (rest.length > 0) throw new UsageError('"token ls" accepts no arguments');
  const format = jsonOnly(flags.format);
  const tokens = await context.tokens.listTokens();
  const when = (ms: number | undefined) => (ms === undefined ? '' : new Date(ms).toISOString());
  const entries = tokens.map((t) => ({
    ID: t.id,
    Name: t.name,
    Scope: t.scope,
    Created: when(t.createdAt),
    LastUsed: when(t.lastUsedAt),
  }));
  if (format === 'json') {
    ctx.stdout.write(jsonLines(entries));
    return 0;
  }
  const rows = entries.map((e) => [e.ID, e.Name, e.Scope, e.Created, e.LastUsed || 'never']);
  ctx.stdout.write(table([['ID', 'NAME', 'SCOPE', 'CREATED', 'LAST USED'], ...rows]));
  return 0;
};

const revoke: Action = async (_args, rest, { context }, ctx) => {
  const [nameOrId, ...extra] = rest;
  if (!nameOrId || extra.length > 0) {
    throw new UsageError('"token revoke" requires exactly 1 argument (a name or id).');
  }
  const { revokeToken } = await import('../../auth/tokens.ts');
  const removed = await revokeToken(context.tokens, nameOrId);
  ctx.stdout.write(`Revoked token ${removed.name} (id ${removed.id})\n`);
  return 0;
};

const ACTIONS: Record<string, Action> = { create, ls: list, list, revoke, rm: revoke };

/** The same settings and composition root as `serve`, so a token lands where the server reads. */
async function openBackend(flags: TokenFlags, ctx: CliContext): Promise<Composition> {
  const [{ parseServeArgs }, { composeAws, composeEmbedded }] = await Promise.all([
    import('../../config.ts'),
    import('../../composition.ts'),
  ]);
  const { data, backend } = flags;
  const config = parseServeArgs(
    [
      ...(data !== undefined ? ['--data', data] : []),
      ...(backend !== undefined ? ['--backend', backend] : []),
    ],
    ctx.env,
  );
  return config.backend === 'aws' ? composeAws(config) : composeEmbedded(config);
}
