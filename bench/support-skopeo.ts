/**
 * Running skopeo for a benchmark: the policy flag it needs where /etc/containers/policy.json is
 * absent, and a run wrapped in /usr/bin/time (when present) for its peak RSS and CPU.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { waitExit } from './support.ts';

export const TIME_BIN = '/usr/bin/time';

/** `--insecure-policy` where the system has no containers policy, else nothing. */
export function skopeoPolicy(): string[] {
  return existsSync('/etc/containers/policy.json') ? [] : ['--insecure-policy'];
}

export interface SkopeoRun {
  /** From spawn to exit. */
  ms: number;
  code: number | null;
  signal: string | null;
  /** stdout and stderr together (the last `keepOutput` characters). */
  output: string;
  /** Whether /usr/bin/time wrapped the run; rssBytes and cpuSeconds are set when it did. */
  timed: boolean;
  rssBytes?: number;
  cpuSeconds?: number;
}

/**
 * `skopeo <args>`, under `/usr/bin/time -f '%M %U %S' -o <timeFile>` when that exists; killed
 * with SIGKILL after timeoutMs when given. Peak RSS and CPU are read only on exit code 0.
 */
export async function runSkopeoTimed(
  args: string[],
  timeFile: string,
  options: { timeoutMs?: number; keepOutput?: number } = {},
): Promise<SkopeoRun> {
  const keep = options.keepOutput ?? 16 * 1024;
  const timed = existsSync(TIME_BIN);
  const [command, argv] = timed
    ? [TIME_BIN, ['-f', '%M %U %S', '-o', timeFile, 'skopeo', ...args]]
    : ['skopeo', args];
  let output = '';
  const started = performance.now();
  const child = spawn(command, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  const collect = (chunk: Buffer) => {
    output = output + chunk.toString();
    if (output.length > keep) output = output.slice(-keep);
  };
  child.stdout!.on('data', collect);
  child.stderr!.on('data', collect);
  const timeoutMs = options.timeoutMs;
  const timer =
    timeoutMs === undefined ? undefined : setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const { code, signal } = await waitExit(child).finally(() => clearTimeout(timer));
  const ms = performance.now() - started;
  if (!timed || code !== 0) return { ms, code, signal, output, timed };
  const [maxKb, user, sys] = (await readFile(timeFile, 'utf8')).trim().split(/\s+/).map(Number);
  return { ms, code, signal, output, timed, rssBytes: maxKb! * 1024, cpuSeconds: user! + sys! };
}
