/** What every command gets: where to write, the environment, a clock and the API client. */
import type { ApiClient } from './http.ts';

export interface Output {
  write(text: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

export interface CliContext {
  stdout: Output;
  stderr: Output;
  env: NodeJS.ProcessEnv;
  /** Built on first use so `help` and `serve` need no server address. */
  client(): ApiClient;
  /** Milliseconds since the epoch. */
  now(): number;
}

export interface Command {
  usage: string;
  run(argv: string[], ctx: CliContext): Promise<number>;
}
