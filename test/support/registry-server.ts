/**
 * Runs the real CNCF distribution registry (Debian package `docker-registry`) on 127.0.0.1:
 * filesystem storage in a temp folder, deletes enabled, no auth, plain HTTP.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { access, writeFile } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import { freePort } from './ports.ts';
import { tempDir } from './tmp.ts';

export interface RegistryServer {
  /** `http://127.0.0.1:<port>` */
  readonly url: string;
  /** `127.0.0.1:<port>`, the registry part of an image reference. */
  readonly host: string;
  readonly port: number;
  /** The folder holding the registry's config and storage. */
  readonly dir: string;
  /** Everything the registry wrote to stdout and stderr so far (for failure messages). */
  output(): string;
  stop(): Promise<void>;
}

export interface RegistryOptions {
  /** Path of the binary; default `docker-registry` on PATH or /usr/bin/docker-registry. */
  binary?: string;
  /** Milliseconds to wait for `/v2/` to answer; default 20 s. */
  startTimeoutMs?: number;
}

const INSTALL_HINT =
  'docker-registry (the CNCF distribution registry) is not installed. Install it with ' +
  '`sudo apt-get install -y docker-registry` (Debian/Ubuntu), or run `npm test` as root: its ' +
  'setup step (node scripts/setup.mjs --test) installs docker-registry, skopeo and docker.io.';

async function isExecutable(path: string): Promise<boolean> {
  try {
    await access(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Where the registry binary is, or undefined; lets a test file decide to skip. */
export async function findRegistryBinary(): Promise<string | undefined> {
  const dirs = (process.env.PATH ?? '').split(delimiter).filter(Boolean);
  for (const dir of [...dirs, '/usr/bin']) {
    const candidate = join(dir, 'docker-registry');
    if (await isExecutable(candidate)) return candidate;
  }
  return undefined;
}

function configYaml(root: string, port: number): string {
  // JSON is YAML; quoting every value keeps paths with odd characters safe.
  return JSON.stringify(
    {
      version: 0.1,
      log: { level: 'warn', accesslog: { disabled: true } },
      storage: {
        filesystem: { rootdirectory: root },
        delete: { enabled: true },
        maintenance: { uploadpurging: { enabled: false } },
      },
      http: { addr: `127.0.0.1:${port}`, secret: randomBytes(16).toString('hex') },
    },
    null,
    2,
  );
}

/** Starts a registry on a free port; retries when another process took the port first. */
export async function startRegistry(options: RegistryOptions = {}): Promise<RegistryServer> {
  const binary = options.binary ?? (await findRegistryBinary());
  if (!binary || !(await isExecutable(binary))) throw new Error(INSTALL_HINT);
  const dir = await tempDir('registry');
  try {
    let lastError: unknown;
    for (let attempt = 1; attempt <= 5; attempt++) {
      const port = await freePort();
      try {
        return await launch(binary, dir.path, port, options.startTimeoutMs ?? 20_000, dir.cleanup);
      } catch (error) {
        lastError = error;
        if (!String(error).includes('address already in use')) break;
      }
    }
    throw lastError;
  } catch (error) {
    await dir.cleanup();
    throw error;
  }
}

async function launch(
  binary: string,
  dir: string,
  port: number,
  timeoutMs: number,
  cleanup: () => Promise<void>,
): Promise<RegistryServer> {
  const configPath = join(dir, `config-${port}.yml`);
  await writeFile(configPath, configYaml(join(dir, 'storage'), port));
  // REGISTRY_* variables override the config file; keep the parent's out.
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([key]) => !key.startsWith('REGISTRY_')),
  );
  const child = spawn(binary, ['serve', configPath], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const collect = (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-64 * 1024);
  };
  child.stdout!.on('data', collect);
  child.stderr!.on('data', collect);
  const exited = new Promise<string>((resolve) => {
    child.once('exit', (code, signal) => resolve(`exited (code ${code}, signal ${signal})`));
    child.once('error', (error) => resolve(`failed to start: ${error.message}`));
  });
  const url = `http://127.0.0.1:${port}`;

  try {
    await waitUntilReady(url, exited, timeoutMs);
  } catch (error) {
    await kill(child);
    throw new Error(`docker-registry on port ${port}: ${(error as Error).message}\n${output}`);
  }

  let stopped: Promise<void> | undefined;
  return {
    url,
    host: `127.0.0.1:${port}`,
    port,
    dir,
    output: () => output,
    stop: () => {
      stopped ??= kill(child).then(cleanup);
      return stopped;
    },
  };
}

async function waitUntilReady(url: string, exited: Promise<string>, timeoutMs: number) {
  const deadline = Date.now() + timeoutMs;
  let exitReason: string | undefined;
  void exited.then((reason) => {
    exitReason = reason;
  });
  while (Date.now() < deadline) {
    if (exitReason) throw new Error(exitReason);
    try {
      const response = await fetch(`${url}/v2/`, { signal: AbortSignal.timeout(1000) });
      await response.arrayBuffer();
      if (response.status === 200) return;
    } catch {
      // Not listening yet.
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`/v2/ did not answer within ${timeoutMs} ms`);
}

function kill(child: ChildProcess): Promise<void> {
  const gone = child.pid === undefined || child.exitCode !== null || child.signalCode !== null;
  if (gone) return Promise.resolve();
  return new Promise((resolve) => {
    const force = setTimeout(() => child.kill('SIGKILL'), 5000);
    child.once('exit', () => {
      clearTimeout(force);
      resolve();
    });
    child.kill('SIGTERM');
  });
}
