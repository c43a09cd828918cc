/**
 * A private containerd for tests: the Debian `containerd` (1.6) started as root with its own
 * config.toml, root, state and gRPC socket in a temp folder, driven by `ctr -a <socket>`. Tests
 * use it as a judge of the registry door the way a Kubernetes node does: `hosts.toml` mirrors
 * under a hosts folder, `ctr image pull --hosts-dir`.
 *
 *   const skip = containerdSkipReason();
 *   describe('...', skipWhen(skip), () => {
 *     let node: Containerd;
 *     beforeAll(async () => { node = await startContainerd(); }, 60_000);
 *     afterAll(() => node?.stop());
 *     it('pulls', async () => {
 *       await node.mirror('docker.io', [`http://${cache.hostPort}`]);
 *       const r = await node.ctr(['image', 'pull', '--hosts-dir', node.hostsDir, ref]);
 *     });
 *   });
 */
import { execFile } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { isExecutable, spawnDaemon } from './daemon-process.ts';
import { type TempDir, tempDir } from './tmp.ts';

export const CONTAINERD_BINARY = '/usr/bin/containerd';
export const CTR_BINARY = '/usr/bin/ctr';

export interface CtrResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface Containerd {
  /** The gRPC socket, for `ctr -a`. */
  readonly socket: string;
  /** The temp folder holding config, root, state and the hosts folder. */
  readonly dir: string;
  /** `<dir>/hosts`, for `ctr image pull --hosts-dir` (one `<registry>/hosts.toml` each). */
  readonly hostsDir: string;
  /**
   * Writes `<hostsDir>/<registry>/hosts.toml` sending `registry` to `hosts` in order, each with
   * pull and resolve capabilities and `headers` (e.g. `Authorization: Bearer ic_...`, as nodes
   * send a cache token). `server` is the registry's own address, never reached here while a
   * mirror answers.
   */
  mirror(
    registry: string,
    hosts: string[],
    options?: { server?: string; headers?: Record<string, string> },
  ): Promise<void>;
  /** Runs `ctr -a <socket> -n <namespace> ...args` (namespace `default` unless given). */
  ctr(args: string[], options?: { namespace?: string; timeoutMs?: number }): Promise<CtrResult>;
  /** The last 64 KiB of containerd's output (for failure messages). */
  output(): string;
  /** SIGTERM (then SIGKILL), removes the folder. */
  stop(): Promise<void>;
}

/**
 * Why a private containerd cannot run here, or undefined when it can. Synchronous, for
 * `describe(name, skipWhen(containerdSkipReason()), fn)`.
 */
export function containerdSkipReason(): string | undefined {
  if (process.platform !== 'linux') return 'private containerd tests need Linux';
  if (process.getuid?.() !== 0) return 'private containerd tests need root (run the tests as root)';
  for (const binary of [CONTAINERD_BINARY, CTR_BINARY]) {
    if (!isExecutable(binary)) {
      return `${binary} is missing: install Debian's containerd (\`apt-get install -y containerd\`)`;
    }
  }
  return undefined;
}

function run(binary: string, args: string[], timeoutMs: number): Promise<CtrResult> {
  return new Promise((resolve) => {
    execFile(
      binary,
      args,
      { timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024, env: { PATH: process.env.PATH } },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

/** Starts a private containerd and waits until `ctr version` reaches it. */
export async function startContainerd(
  options: { startTimeoutMs?: number } = {},
): Promise<Containerd> {
  const skip = containerdSkipReason();
  if (skip) throw new Error(skip);
  const dir: TempDir = await tempDir('containerd');
  const socket = dir.file('containerd.sock');
  const hostsDir = dir.file('hosts');
  await mkdir(hostsDir);
  // Only what a pull needs: no CRI (it would look for CNI and start a streaming server), the
  // opt plugin inside the folder rather than /opt/containerd, and no metrics or debug sockets.
  const config = [
    'version = 2',
    `root = "${dir.file('root')}"`,
    `state = "${dir.file('state')}"`,
    'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
    '[grpc]',
    `  address = "${socket}"`,
    '[ttrpc]',
    `  address = "${socket}.ttrpc"`,
    '[debug]',
    '  address = ""',
    '[plugins."io.containerd.internal.v1.opt"]',
    `  path = "${dir.file('opt')}"`,
    '',
  ].join('\n');
  const configPath = dir.file('config.toml');
  await writeFile(configPath, config);
  const daemon = spawnDaemon(CONTAINERD_BINARY, ['--config', configPath]);
  const { child, exited } = daemon;

  let stopped: Promise<void> | undefined;
  const stop = () => {
    stopped ??= (async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(timer);
      }
      await dir.cleanup();
    })();
    return stopped;
  };

  const ctr = (args: string[], ctrOptions: { namespace?: string; timeoutMs?: number } = {}) =>
    run(
      CTR_BINARY,
      ['-a', socket, '-n', ctrOptions.namespace ?? 'default', ...args],
      ctrOptions.timeoutMs ?? 120_000,
    );

  try {
    const deadline = Date.now() + (options.startTimeoutMs ?? 30_000);
    for (;;) {
      const ended = daemon.exitReason();
      if (ended) throw new Error(ended);
      if (Date.now() > deadline) throw new Error('ctr version did not reach it in time');
      const version = await ctr(['version'], { timeoutMs: 5000 });
      if (version.code === 0 && /Server:/.test(version.stdout)) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  } catch (error) {
    await stop();
    throw new Error(`private containerd: ${(error as Error).message}\n${daemon.output()}`);
  }

  return {
    socket,
    dir: dir.path,
    hostsDir,
    mirror: async (registry, hosts, mirrorOptions = {}) => {
      const folder = dir.file('hosts', registry);
      await mkdir(folder, { recursive: true });
      const server =
        mirrorOptions.server ??
        (registry === 'docker.io' ? 'https://registry-1.docker.io' : `https://${registry}`);
      const headers = Object.entries(mirrorOptions.headers ?? {});
      const lines = [
        `server = "${server}"`,
        ...hosts.flatMap((host) => [
          '',
          `[host."${host}"]`,
          '  capabilities = ["pull", "resolve"]',
          ...(headers.length > 0 ? [`  [host."${host}".header]`] : []),
          ...headers.map(([name, value]) => `    ${name} = ${JSON.stringify(value)}`),
        ]),
        '',
      ];
      await writeFile(`${folder}/hosts.toml`, lines.join('\n'));
    },
    ctr,
    output: daemon.output,
    stop,
  };
}
