import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

// A config folder of our own, so the user's ~/.docker (contexts, credential helpers) never
// changes what the tests see.
const configDir = mkdtempSync(join(tmpdir(), 'docker-config-'));

export interface DockerResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * A config folder whose config.json sends these headers with every request (`HttpHeaders`, as
 * users configure a bearer token for the cache), one folder per distinct set of headers.
 */
const headerConfigDirs = new Map<string, string>();
function configDirWith(headers: Record<string, string>): string {
  const json = JSON.stringify({ HttpHeaders: headers });
  let dir = headerConfigDirs.get(json);
  if (!dir) {
    dir = mkdtempSync(join(tmpdir(), 'docker-config-'));
    writeFileSync(join(dir, 'config.json'), json);
    headerConfigDirs.set(json, dir);
  }
  return dir;
}

/**
 * The docker CLI with only these settings in its environment (DOCKER_HOST, DOCKER_CONFIG, ...):
 * no hints, and a failure as an exit code rather than a throw.
 */
export function runDockerCli(
  args: string[],
  env: Record<string, string | undefined>,
  timeoutMs: number,
): Promise<DockerResult> {
  return new Promise((resolve) => {
    execFile(
      'docker',
      args,
      {
        env: { PATH: process.env.PATH, HOME: process.env.HOME, DOCKER_CLI_HINTS: 'false', ...env },
        timeout: timeoutMs,
        maxBuffer: 64 * 1024 * 1024,
      },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

/** Runs the real docker CLI as a client of `hostPort` (no engine involved). */
export function docker(
  hostPort: string,
  args: string[],
  timeoutMs = 120_000,
  options: { headers?: Record<string, string> } = {},
): Promise<DockerResult> {
  const config = options.headers ? configDirWith(options.headers) : configDir;
  return runDockerCli(args, { DOCKER_HOST: `tcp://${hostPort}`, DOCKER_CONFIG: config }, timeoutMs);
}
