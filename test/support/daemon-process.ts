/**
 * A private daemon (dockerd, containerd) as a child process: its recent output kept for failure
 * messages, why it ended, and a kill on the way out should the test worker crash before it stops
 * the daemon.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';

const live = new Set<ChildProcess>();
// A crashed test worker must not leave daemons behind.
process.once('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});

export interface DaemonProcess {
  child: ChildProcess;
  /** Resolves once the process has ended (or never started). */
  exited: Promise<void>;
  /** The last 64 KiB of its stdout and stderr. */
  output(): string;
  /** How it ended, once it has: its exit code and signal, or why it did not start. */
  exitReason(): string | undefined;
}

export function spawnDaemon(binary: string, args: string[]): DaemonProcess {
  const child = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(child);
  let output = '';
  const collect = (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-64 * 1024);
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  let exitReason: string | undefined;
  const exited = new Promise<void>((resolve) => {
    const ended = (reason: string) => {
      exitReason ??= reason;
      live.delete(child);
      resolve();
    };
    child.once('exit', (code, signal) => ended(`exited (code ${code}, signal ${signal})`));
    child.once('error', (error) => ended(`failed to start: ${error.message}`));
  });
  return { child, exited, output: () => output, exitReason: () => exitReason };
}

/** Synchronous, for the skip reasons `describe.skipIf` needs before any test runs. */
export function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}
