import { execFile } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
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

/** Runs the real docker CLI as a client of `hostPort` (no engine involved). */
export function docker(
  hostPort: string,
  args: string[],
  timeoutMs = 120_000,
): Promise<DockerResult> {
  return new Promise((resolve) => {
    execFile(
      'docker',
      args,
      {
        env: {
          PATH: process.env.PATH,
          HOME: process.env.HOME,
          DOCKER_HOST: `tcp://${hostPort}`,
          DOCKER_CONFIG: configDir,
          DOCKER_CLI_HINTS: 'false',
        },
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
