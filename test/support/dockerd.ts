/**
 * A private Docker engine for tests: the Debian `docker.io` dockerd (20.10) started as root on
 * a unix socket in a temp folder, with its own data-root, exec-root, managed containerd and
 * docker CLI config, and no bridge, iptables or overlay mounts. Tests use it as a judge
 * (`docker load` what the server saves, `docker save` what the server loads).
 *
 *   const skip = dockerdSkipReason();
 *   describe('...', skipWhen(skip), () => {
 *     let engine: Dockerd;
 *     beforeAll(async () => { engine = await startDockerd(); }, 90_000);
 *     afterAll(() => engine?.stop());
 *     it('loads', async () => { const r = await engine.docker(['load', '-i', tar]); ... });
 *   });
 */
import { type ChildProcess, execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { join } from 'node:path';
import { isExecutable, spawnDaemon } from './daemon-process.ts';
import { type DockerResult, runDockerCli } from './docker-cli.ts';
import { type TempDir, tempDir } from './tmp.ts';

export const DOCKERD_BINARY = '/usr/sbin/dockerd';

export type { DockerResult };

export interface Dockerd {
  /** The engine's unix socket path. */
  readonly socket: string;
  /** `unix://<socket>`, for DOCKER_HOST. */
  readonly host: string;
  /** The temp folder holding data-root, exec-root, socket, pidfile and CLI config. */
  readonly dir: string;
  /** Engine version as reported by `/version` (e.g. `20.10.24+dfsg1`). */
  readonly version: string;
  /** Engine API version (e.g. `1.41`). */
  readonly apiVersion: string;
  /** Runs the docker CLI against this engine (see `dockerAt`). */
  docker(args: string[], options?: DockerAtOptions): Promise<DockerResult>;
  /** A raw Engine API call on the socket; the body is returned as text. */
  api(method: string, path: string): Promise<{ status: number; body: string }>;
  /** The last 64 KiB of dockerd's stdout and stderr (for failure messages). */
  output(): string;
  /** SIGTERM (then SIGKILL after a grace period), unmounts leftovers, removes the folder. */
  stop(): Promise<void>;
}

export interface DockerdOptions {
  /** Graph driver; default `vfs` (no overlay mounts, works in any sandbox). */
  storageDriver?: string;
  /** Milliseconds to wait for `/_ping`; default 60 s. */
  startTimeoutMs?: number;
  /**
   * More daemon flags, after the defaults: e.g. `--registry-mirror http://127.0.0.1:PORT` and
   * `--insecure-registry 127.0.0.1:PORT` to make the engine a mirror client of the cache.
   */
  args?: string[];
}

export interface DockerAtOptions {
  timeoutMs?: number;
  /** A private DOCKER_CONFIG folder; default one shared by this module's callers. */
  configDir?: string;
  /** Extra environment variables. */
  env?: Record<string, string>;
}

/**
 * Why a private dockerd cannot run here, or undefined when it can. Synchronous, for
 * `describe(name, skipWhen(dockerdSkipReason()), fn)`.
 */
export function dockerdSkipReason(): string | undefined {
  if (process.platform !== 'linux') return 'private dockerd tests need Linux';
  if (process.getuid?.() !== 0) return 'private dockerd tests need root (run the tests as root)';
  if (!isExecutable(DOCKERD_BINARY)) {
    return `${DOCKERD_BINARY} is missing: install Debian's docker.io (\`apt-get install -y docker.io\`)`;
  }
  if (!onPath('docker')) return 'the docker CLI is not on PATH';
  return undefined;
}

function onPath(binary: string): boolean {
  return (process.env.PATH ?? '').split(':').some((dir) => dir && isExecutable(join(dir, binary)));
}

let sharedConfigDir: Promise<TempDir> | undefined;

/**
 * Runs the docker CLI against the engine on `socketPath` with a private DOCKER_CONFIG, so the
 * user's ~/.docker (contexts, credential helpers) never changes what the tests see.
 */
export async function dockerAt(
  socketPath: string,
  args: string[],
  options: DockerAtOptions = {},
): Promise<DockerResult> {
  sharedConfigDir ??= tempDir('docker-config');
  const config = options.configDir ?? (await sharedConfigDir).path;
  return runDockerCli(
    args,
    { DOCKER_HOST: `unix://${socketPath}`, DOCKER_CONFIG: config, ...options.env },
    options.timeoutMs ?? 180_000,
  );
}

/** One Engine API request over a unix socket. */
export function engineRequest(
  socketPath: string,
  method: string,
  path: string,
  timeoutMs = 10_000,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, method, path, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }),
      );
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${path} timed out`)));
    req.on('error', reject);
    req.end();
  });
}

/** Starts a private dockerd and waits until `/_ping` answers. */
export async function startDockerd(options: DockerdOptions = {}): Promise<Dockerd> {
  const skip = dockerdSkipReason();
  if (skip) throw new Error(skip);
  const dir = await tempDir('dockerd');
  const socket = dir.file('docker.sock');
  const configDir = dir.file('cli-config');
  await mkdir(configDir);
  // An empty daemon.json of our own: /etc/docker/daemon.json must not leak in.
  const daemonJson = dir.file('daemon.json');
  await writeFile(daemonJson, '{}\n');
  const args = [
    `--config-file=${daemonJson}`,
    `--data-root=${dir.file('data')}`,
    `--exec-root=${dir.file('exec')}`,
    `--pidfile=${dir.file('docker.pid')}`,
    `--host=unix://${socket}`,
    `--storage-driver=${options.storageDriver ?? 'vfs'}`,
    '--bridge=none',
    '--iptables=false',
    '--ip6tables=false',
    '--ip-masq=false',
    '--userland-proxy=false',
    ...(options.args ?? []),
  ];
  const daemon = spawnDaemon(DOCKERD_BINARY, args);
  const { child, exited } = daemon;

  const stopAndClean = async () => {
    await terminate(child, exited, dir.path);
    unmountUnder(dir.path);
    await dir.cleanup();
  };

  let version: { Version: string; ApiVersion: string };
  try {
    const deadline = Date.now() + (options.startTimeoutMs ?? 60_000);
    for (;;) {
      const ended = daemon.exitReason();
      if (ended) throw new Error(ended);
      if (Date.now() > deadline) throw new Error('/_ping did not answer in time');
      try {
        const ping = await engineRequest(socket, 'GET', '/_ping', 1000);
        if (ping.status === 200) break;
      } catch {
        // Not listening yet.
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    version = JSON.parse((await engineRequest(socket, 'GET', '/version')).body);
  } catch (error) {
    await stopAndClean();
    throw new Error(`private dockerd: ${(error as Error).message}\n${daemon.output()}`);
  }

  let stopped: Promise<void> | undefined;
  return {
    socket,
    host: `unix://${socket}`,
    dir: dir.path,
    version: version.Version,
    apiVersion: version.ApiVersion,
    docker: (cliArgs, cliOptions) => dockerAt(socket, cliArgs, { configDir, ...cliOptions }),
    api: (method, path) => engineRequest(socket, method, path),
    output: daemon.output,
    stop: () => {
      stopped ??= stopAndClean();
      return stopped;
    },
  };
}

async function terminate(child: ChildProcess, exited: Promise<void>, dir: string) {
  const containerdPid = await readPid(join(dir, 'exec/containerd/containerd.pid'));
  if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    await exited;
    clearTimeout(timer);
  }
  // dockerd stops its managed containerd on a clean exit; after a SIGKILL it may linger.
  if (containerdPid !== undefined && processAlive(containerdPid)) {
    try {
      process.kill(containerdPid, 'SIGKILL');
    } catch {
      // Gone meanwhile.
    }
  }
}

async function readPid(path: string): Promise<number | undefined> {
  try {
    const pid = Number.parseInt((await readFile(path, 'utf8')).trim(), 10);
    return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * dockerd bind-mounts its data-root onto itself (and may mount shm or netns files); a killed
 * engine leaves them behind, and removing the folder would then fail or reach through.
 */
function unmountUnder(dir: string) {
  if (!existsSync('/proc/self/mounts')) return;
  const mounts = readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .map((line) => line.split(' ')[1])
    .filter((target): target is string => !!target)
    .map((target) => target.replace(/\\040/g, ' '))
    .filter((target) => target === dir || target.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
  for (const target of mounts) {
    try {
      execFileSync('umount', ['-l', target], { stdio: 'ignore' });
    } catch {
      // Already gone.
    }
  }
}
