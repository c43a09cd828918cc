/** The CLI's `main` in process with captured output, for commands that need no server. */
import type { CliContext } from '../../lib/cli/context.ts';
import { main } from '../../lib/cli/main.ts';

export function captureCli(env: NodeJS.ProcessEnv = {}) {
  let stdout = '';
  let stderr = '';
  const ctx: CliContext = {
    stdout: { write: (text: string) => (stdout += text) },
    stderr: { write: (text: string) => (stderr += text) },
    env,
    client: () => {
      throw new Error('token commands must not use the HTTP client');
    },
    now: () => Date.UTC(2026, 0, 2, 3, 4, 5),
  };
  return {
    run: (...argv: string[]) => main(argv, ctx),
    out: () => stdout,
    err: () => stderr,
  };
}
