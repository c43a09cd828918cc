/**
 * Shared benchmark setup: the generated benchmark image (cached under .bench/ in the same
 * folder and meta.json format bench/pull.ts writes, so either benchmark reuses the other's
 * image), pushing it to a local docker-registry, a `node bin/image-cache.js serve` child whose
 * pid is the server itself, and /proc readings (peak RSS, CPU).
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { cpus, tmpdir, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { request } from 'undici';
import type { Digest } from '../lib/digest.ts';
import { type GeneratedBlob, generateBigImage } from '../test/support/image-factory.ts';
import { freePort } from '../test/support/ports.ts';
import { type PushTarget, pushBlob, pushManifest } from '../test/support/push.ts';
import type { RegistryServer } from '../test/support/registry-server.ts';

export const execFileP = promisify(execFile);
export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const CACHE_ROOT = join(ROOT, '.bench');
export const MiB = 1024 * 1024;
/** The target every benchmark holds the server's peak RSS to. */
export const RSS_TARGET_BYTES = 200 * 1000 * 1000;

export function log(message: string): void {
  process.stderr.write(`[bench] ${message}\n`);
}

export function seconds(ms: number): string {
  return (ms / 1000).toFixed(2);
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

export function positiveInt(value: string, flag: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${flag} must be a positive integer`);
  return n;
}

/** User + system CPU seconds of a process, from /proc/<pid>/stat. */
export async function cpuSeconds(pid: number): Promise<number> {
  const text = await readFile(`/proc/${pid}/stat`, 'utf8');
  // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return (Number(rest[11]) + Number(rest[12])) / 100; // USER_HZ is 100 on Linux.
}

/** A `kB` field of /proc/<pid>/status (VmRSS, VmHWM), in bytes. */
export async function statusField(pid: number, field: string): Promise<number> {
  const text = await readFile(`/proc/${pid}/status`, 'utf8');
  const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text);
  if (!match) throw new Error(`no ${field} in /proc/${pid}/status`);
  return Number(match[1]) * 1024;
}

/**
 * Resets the peak RSS (VmHWM) of a process to its current RSS (`echo 5 > clear_refs`), so a
 * phase can be measured on its own. Answers false where the kernel does not allow it.
 */
export async function resetPeakRss(pid: number): Promise<boolean> {
  try {
    await writeFile(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

export function waitExit(
  child: ChildProcess,
): Promise<{ code: number | null; signal: string | null }> {
  if (child.exitCode !== null || child.signalCode !== null) {
    return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  }
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
}

// ---------------------------------------------------------------------------------------------
// The benchmark image

export interface BenchImageOptions {
  sizeMiB: number;
  layers: number;
  seed: string;
  gzipLevel: number;
}

export interface BenchImage {
  manifest: { mediaType: string; digest: Digest; bytes: Buffer };
  /** Config first, then layers. */
  blobs: GeneratedBlob[];
  layers: { digest: Digest; size: number }[];
  fileBytes: number;
}

interface CacheMeta {
  version: 1;
  manifest: { mediaType: string; digest: Digest; base64: string };
  blobs: { mediaType: string; digest: Digest; size: number; file?: string; base64?: string }[];
  layers: Digest[];
  fileBytes: number;
}

async function loadCached(dir: string): Promise<BenchImage | undefined> {
  let meta: CacheMeta;
  try {
    meta = JSON.parse(await readFile(join(dir, 'meta.json'), 'utf8')) as CacheMeta;
  } catch {
    return undefined;
  }
  if (meta.version !== 1) return undefined;
  const blobs: GeneratedBlob[] = [];
  for (const blob of meta.blobs) {
    const entry: GeneratedBlob = {
      mediaType: blob.mediaType,
      digest: blob.digest,
      size: blob.size,
    };
    if (blob.file) {
      entry.path = join(dir, blob.file);
      const info = await stat(entry.path).catch(() => undefined);
      if (!info || info.size !== blob.size) return undefined;
    } else if (blob.base64 !== undefined) {
      entry.bytes = Buffer.from(blob.base64, 'base64');
    } else {
      return undefined;
    }
    blobs.push(entry);
  }
  const sizes = new Map(blobs.map((b) => [b.digest, b.size]));
  return {
    manifest: {
      mediaType: meta.manifest.mediaType,
      digest: meta.manifest.digest,
      bytes: Buffer.from(meta.manifest.base64, 'base64'),
    },
    blobs,
    layers: meta.layers.map((digest) => ({ digest, size: sizes.get(digest)! })),
    fileBytes: meta.fileBytes,
  };
}

/** The image from .bench/, generated there first when absent (random files, gzip layers). */
export async function benchImage(options: BenchImageOptions): Promise<BenchImage> {
  const seed = options.seed.replace(/[^A-Za-z0-9._-]/g, '_');
  const key = `image-${seed}-${options.sizeMiB}mib-${options.layers}l-gz${options.gzipLevel}`;
  const dir = join(CACHE_ROOT, key);
  const cached = await loadCached(dir);
  if (cached) {
    log(`using cached image in ${dir}`);
    return cached;
  }
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  log(`generating ${options.sizeMiB} MiB in ${options.layers} gzip layers into ${dir} ...`);
  const started = performance.now();
  const image = await generateBigImage({
    seed: options.seed,
    dir,
    totalBytes: options.sizeMiB * MiB,
    layerCount: options.layers,
    format: 'docker',
    gzipLevel: options.gzipLevel,
  });
  log(`generated in ${seconds(performance.now() - started)} s`);
  const meta: CacheMeta = {
    version: 1,
    manifest: {
      mediaType: image.mediaType,
      digest: image.digest,
      base64: image.bytes.toString('base64'),
    },
    blobs: image.blobs.map((blob) => {
      if (blob.path) {
        return { ...pick(blob), file: blob.path.slice(dir.length + 1) };
      }
      if (blob.bytes) return { ...pick(blob), base64: blob.bytes.toString('base64') };
      throw new Error(`generated blob ${blob.digest} has neither path nor bytes`);
    }),
    layers: image.layers.map((l) => l.digest),
    fileBytes: image.fileBytes,
  };
  // Written last: a meta.json means the folder is complete.
  await writeFile(join(dir, 'meta.json'), JSON.stringify(meta, null, 2));
  const loaded = await loadCached(dir);
  if (!loaded) throw new Error(`could not read back the generated image in ${dir}`);
  return loaded;
}

function pick(blob: GeneratedBlob) {
  return { mediaType: blob.mediaType, digest: blob.digest, size: blob.size };
}

export async function pushBenchImage(
  registry: RegistryServer,
  image: BenchImage,
  repository: string,
  tag: string,
  /** How the log line names the image; `repository:tag` unless given. */
  label = `${repository}:${tag}`,
): Promise<void> {
  const target: PushTarget = { url: registry.url, repository };
  const started = performance.now();
  const queue = [...image.blobs];
  await Promise.all(
    Array.from({ length: 4 }, async () => {
      for (let blob = queue.shift(); blob; blob = queue.shift()) await pushBlob(target, blob);
    }),
  );
  await pushManifest(target, image.manifest.digest, image.manifest);
  await pushManifest(target, tag, image.manifest);
  log(`pushed ${label} in ${seconds(performance.now() - started)} s`);
}

// ---------------------------------------------------------------------------------------------
// The server under test

export interface ServerChild {
  child: ChildProcess;
  pid: number;
  url: string;
  output(): string;
  stop(): Promise<void>;
}

/** `node bin/image-cache.js serve` on a free port (node spawned directly: pid = server). */
export interface ServerChildOptions {
  dataDir: string;
  registries: string;
  extraArgs?: string[];
  nodeArgs?: string[];
  /** Extra environment for the server, beside IMAGE_CACHE_REGISTRIES. */
  env?: NodeJS.ProcessEnv;
}

export async function startServerChild(options: ServerChildOptions): Promise<ServerChild> {
  let lastError: unknown;
  for (let attempt = 1; attempt <= 5; attempt++) {
    const port = await freePort();
    try {
      return await launch(options, port);
    } catch (error) {
      lastError = error;
      if (!/EADDRINUSE|address already in use/.test(String(error))) break;
    }
  }
  throw lastError;
}

async function launch(options: ServerChildOptions, port: number): Promise<ServerChild> {
  const args = [
    ...(options.nodeArgs ?? []),
    join(ROOT, 'bin', 'image-cache.js'),
    'serve',
    '--host',
    '127.0.0.1',
    '--port',
    String(port),
    '--data',
    options.dataDir,
    ...(options.extraArgs ?? []),
  ];
  const child = spawn(process.execPath, args, {
    cwd: ROOT,
    env: { ...process.env, IMAGE_CACHE_REGISTRIES: options.registries, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const collect = (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-64 * 1024);
  };
  child.stdout!.on('data', collect);
  child.stderr!.on('data', collect);
  const exited = waitExit(child);
  let exitReason: string | undefined;
  void exited.then(
    ({ code, signal }) => {
      exitReason = `exited (code ${code}, signal ${signal})`;
    },
    (error: Error) => {
      exitReason = `failed to start: ${error.message}`;
    },
  );
  const url = `http://127.0.0.1:${port}`;
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const force = setTimeout(() => child.kill('SIGKILL'), 10_000);
    child.kill('SIGTERM');
    await exited.catch(() => undefined);
    clearTimeout(force);
  };
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (exitReason) throw new Error(`image-cache server ${exitReason}\n${output}`);
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`image-cache server did not answer /_ping within 60 s\n${output}`);
    }
    try {
      const response = await request(`${url}/_ping`, { headersTimeout: 1000, bodyTimeout: 1000 });
      await response.body.dump();
      if (response.statusCode === 200) break;
    } catch {
      // Not listening yet.
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return { child, pid: child.pid!, url, output: () => output, stop };
}

// ---------------------------------------------------------------------------------------------
// Report helpers

export async function machineLines(): Promise<string[]> {
  const cpuList = cpus();
  const lines = [
    `cores: ${cpuList.length} (${cpuList[0]?.model.trim() ?? 'unknown'})`,
    `memory: ${(totalmem() / 2 ** 30).toFixed(1)} GiB`,
    `node: ${process.version}`,
  ];
  const version = async (cmd: string, args: string[]) => {
    try {
      const { stdout, stderr } = await execFileP(cmd, args);
      return (stdout || stderr).trim().split('\n')[0];
    } catch {
      return 'not found';
    }
  };
  lines.push(`skopeo: ${await version('skopeo', ['--version'])}`);
  lines.push(`registry: ${await version('docker-registry', ['--version'])}`);
  lines.push(`kernel: ${await version('uname', ['-sr'])}`);
  lines.push(`tmpdir: ${tmpdir()}`);
  return lines;
}

export function pad(value: string, width: number, right = false): string {
  return right ? value.padStart(width) : value.padEnd(width);
}

// ---------------------------------------------------------------------------------------------
// Running a benchmark

export async function requireSkopeo(): Promise<void> {
  await execFileP('skopeo', ['--version']).catch(() => {
    throw new Error('skopeo is not installed (apt-get install skopeo)');
  });
}

/**
 * Cleanups run last-in first-out by run(), also on SIGINT/SIGTERM (then the process exits 1).
 * Each cleanup's failure is ignored.
 */
export function cleanupStack(): { push(fn: () => Promise<void>): void; run(): Promise<void> } {
  const cleanups: (() => Promise<void>)[] = [];
  const run = async () => {
    for (const fn of cleanups.splice(0).reverse()) await fn().catch(() => undefined);
  };
  const onSignal = (signal: NodeJS.Signals) => {
    log(`${signal}: cleaning up`);
    void run().finally(() => process.exit(1));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  return { push: (fn) => cleanups.push(fn), run };
}

/** Runs main; exit code 0, or 1 after `<name> failed: <stack>` on stderr. */
export function runMain(name: string, main: () => Promise<void>): void {
  main().then(
    () => {
      process.exitCode = 0;
    },
    (error: unknown) => {
      process.stderr.write(
        `${name} failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
      );
      process.exitCode = 1;
    },
  );
}
