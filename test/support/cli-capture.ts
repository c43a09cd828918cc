/** The CLI's `main` in process with captured output. */
import type { CliContext } from '../../lib/cli/context.ts';
import { ApiClient } from '../../lib/cli/http.ts';
import { main } from '../../lib/cli/main.ts';

/** For commands that need no server. */
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

/** The CLI's `main` in process against a server at `url`, with captured output and exit code. */
export async function runCliAgainst(
  url: string,
  argv: string[],
  token?: string,
): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const ctx: CliContext = {
    stdout: { write: (text: string) => (stdout += text) },
    stderr: { write: (text: string) => (stderr += text) },
    env: { IMAGE_CACHE_URL: url, ...(token && { IMAGE_CACHE_TOKEN: token }) },
    client: () => new ApiClient({ baseUrl: url, ...(token && { token }) }),
    now: () => Date.now(),
  };
  const code = await main(argv, ctx);
  return { code, stdout, stderr };
}
