/**
 * Pull benchmark: image-cache cold pull vs `skopeo copy`, both reading the same image from a
 * local CNCF distribution registry (Debian `docker-registry`) on 127.0.0.1.
 *
 *   npm run bench:pull                                  # 1 GiB image in 8 layers, 3 runs each
 *   npm run bench:pull -- --size-mib 64 --runs 1        # quick smoke run
 *
 * Flags:
 *   --size-mib N     file content of the image in MiB (default 1024)
 *   --layers N       layer count (default 8)
 *   --runs N         runs per tool (default 3)
 *   --seed S         generator seed (default "bench")
 *   --gzip-level N   gzip level of the generated layers (default 1)
 *   --tools LIST     comma list of image-cache,skopeo (default both); image-cache-aws adds
 *                    the AWS backend explicitly
 *   --backend aws    also run image-cache on the AWS backend (tool image-cache-aws), beside
 *                    the embedded default: DynamoDB Local and fauxqs are started once (as the
 *                    tests start them), and each run spawns `serve --backend aws
 *                    --create-resources` with AWS_ENDPOINT_URL_S3/_DYNAMODB pointing at them
 *                    and a fresh bucket and table. Its verification reads every blob back
 *                    from S3 and hashes it; the bucket is emptied after each run (fauxqs keeps
 *                    objects in memory). Peak RSS and CPU are the server's alone, not the
 *                    emulators'. DynamoDB requests per pull and per GC: npm run bench:dynamo.
 *   --concurrency N  passed to the server as --concurrency (default: the server's default)
 *   --cpu-prof       run the server with `node --cpu-prof`; profiles land in .bench/profiles/
 *   --timeout-s N    give up on a single pull or copy after N s (default 60 + size-mib / 2)
 *
 * Setup (not timed): start docker-registry with temp storage; generate the image (random,
 * incompressible file data in gzip layers) or reuse it from .bench/ (gitignored, keyed by seed,
 * size, layer count and gzip level); push it as docker.io/library/bench:1 over the
 * distribution API.
 *
 * Runs alternate the tools (image-cache, skopeo, image-cache, skopeo, ...) so neither gets all
 * the warm-cache runs:
 *   image-cache  a fresh `node bin/image-cache.js serve` child (node spawned directly, so the
 *                pid is the server itself) with an empty data dir and
 *                IMAGE_CACHE_REGISTRIES=docker.io=<registry>; timed from sending
 *                `POST /images/create?fromImage=docker.io/library/bench&tag=1` until the
 *                NDJSON progress stream ends (a line with "error" fails the benchmark). Peak
 *                RSS is VmHWM from /proc/<pid>/status once the stream ended; CPU is the
 *                server's utime+stime consumed during the pull. Afterwards every blob must sit
 *                at <data>/blobs/sha256/<hex> with the right size and sha256.
 *   skopeo       `skopeo copy --src-tls-verify=false docker://<registry>/library/bench:1
 *                dir:<fresh tmp dir>`, wrapped in `/usr/bin/time` for peak RSS and CPU when
 *                that exists (Debian package `time`); timed from spawn to exit.
 *
 * Caveat: the OS page cache cannot be dropped without root, so after the first run the
 * registry's blob files are read from memory by both tools; alternating keeps that fair.
 * MB/s is compressed bytes transferred (manifest + config + layers) / median seconds,
 * MB = 10^6 bytes. Exit status: 0 when the benchmark ran (even if a target is missed),
 * 1 on any error.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { cpus, tmpdir, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import { request } from 'undici';
import type { Digest } from '../lib/digest.ts';
import {
  type AwsEmulators,
  awsEmulators,
  freshResourceNames,
  openAwsAdapters,
  stopAwsEmulators,
} from '../test/support/aws-emulators.ts';
import { type GeneratedBlob, generateBigImage } from '../test/support/image-factory.ts';
import { freePort } from '../test/support/ports.ts';
import { type PushTarget, pushBlob, pushManifest } from '../test/support/push.ts';
import { type RegistryServer, startRegistry } from '../test/support/registry-server.ts';
import { tempDir } from '../test/support/tmp.ts';

const execFileP = promisify(execFile);
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const CACHE_ROOT = join(ROOT, '.bench');
const REPOSITORY = 'library/bench';
const TAG = '1';
const RSS_TARGET_BYTES = 200 * 1000 * 1000;
const MiB = 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// Options

interface Options {
  backend: 'embedded' | 'aws';
  sizeMiB: number;
  layers: number;
  runs: number;
  seed: string;
  gzipLevel: number;
  tools: Tool[];
  concurrency?: number;
  cpuProf: boolean;
  timeoutMs: number;
}

type Tool = 'image-cache' | 'image-cache-aws' | 'skopeo';
const TOOLS: readonly Tool[] = ['image-cache', 'image-cache-aws', 'skopeo'];

function positiveInt(value: string, flag: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${flag} must be a positive integer`);
  return n;
}

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      'size-mib': { type: 'string', default: '1024' },
      layers: { type: 'string', default: '8' },
      runs: { type: 'string', default: '3' },
      seed: { type: 'string', default: 'bench' },
      'gzip-level': { type: 'string', default: '1' },
      tools: { type: 'string', default: 'image-cache,skopeo' },
      concurrency: { type: 'string' },
      'cpu-prof': { type: 'boolean', default: false },
      'timeout-s': { type: 'string' },
      backend: { type: 'string', default: 'embedded' },
    },
    strict: true,
    allowPositionals: false,
  });
  const backend = values.backend;
  if (backend !== 'embedded' && backend !== 'aws') {
    throw new Error('--backend must be embedded or aws');
  }
  const tools = values.tools.split(',').map((t) => t.trim());
  for (const tool of tools) {
    if (!TOOLS.includes(tool as Tool)) throw new Error(`unknown tool: ${tool}`);
  }
  // Beside the embedded default: image-cache (embedded), image-cache-aws, then skopeo.
  if (backend === 'aws' && !tools.includes('image-cache-aws')) {
    const at = tools.indexOf('image-cache');
    tools.splice(at === -1 ? 0 : at + 1, 0, 'image-cache-aws');
  }
  const gzipLevel = Number(values['gzip-level']);
  if (!Number.isInteger(gzipLevel) || gzipLevel < 0 || gzipLevel > 9) {
    throw new Error('--gzip-level must be 0..9');
  }
  const sizeMiB = positiveInt(values['size-mib'], '--size-mib');
  const timeoutS =
    values['timeout-s'] === undefined
      ? 60 + Math.ceil(sizeMiB / 2)
      : positiveInt(values['timeout-s'], '--timeout-s');
  return {
    backend,
    sizeMiB,
    timeoutMs: timeoutS * 1000,
    layers: positiveInt(values.layers, '--layers'),
    runs: positiveInt(values.runs, '--runs'),
    seed: values.seed,
    gzipLevel,
    tools: tools as Tool[],
    concurrency:
      values.concurrency === undefined
        ? undefined
        : positiveInt(values.concurrency, '--concurrency'),
    cpuProf: values['cpu-prof'],
  };
}

// ---------------------------------------------------------------------------------------------
// Small helpers

function log(message: string): void {
  process.stderr.write(`[bench] ${message}\n`);
}

function seconds(ms: number): string {
  return (ms / 1000).toFixed(2);
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(path, { highWaterMark: MiB }), hash);
  return hash.digest('hex');
}

/** Ticks (user + system) of a process from /proc/<pid>/stat, in seconds. */
async function cpuSeconds(pid: number): Promise<number> {
  const text = await readFile(`/proc/${pid}/stat`, 'utf8');
  // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(rest[11]) + Number(rest[12]);
  return ticks / 100; // USER_HZ is 100 on Linux.
}

async function statusField(pid: number, field: string): Promise<number> {
  const text = await readFile(`/proc/${pid}/status`, 'utf8');
  const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text);
  if (!match) throw new Error(`no ${field} in /proc/${pid}/status`);
  return Number(match[1]) * 1024;
}

function waitExit(child: ChildProcess): Promise<{ code: number | null; signal: string | null }> {
  if (child.exitCode !== null || child.signalCode !== null) {
    return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  }
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
}

// ---------------------------------------------------------------------------------------------
// The benchmark image (generated once, cached under .bench/)

interface CachedBlob {
  mediaType: string;
  digest: Digest;
  size: number;
  /** File name inside the cache folder, or inline base64 for small blobs. */
  file?: string;
  base64?: string;
}

interface BenchImage {
  manifest: { mediaType: string; digest: Digest; bytes: Buffer };
  /** Config first, then layers. */
  blobs: GeneratedBlob[];
  layers: { digest: Digest; size: number }[];
  fileBytes: number;
}

interface CacheMeta {
  version: 1;
  manifest: { mediaType: string; digest: Digest; base64: string };
  blobs: CachedBlob[];
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

async function benchImage(options: Options): Promise<BenchImage> {
  const key = `image-${options.seed.replace(/[^A-Za-z0-9._-]/g, '_')}-${options.sizeMiB}mib-${options.layers}l-gz${options.gzipLevel}`;
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
      const entry: CachedBlob = { mediaType: blob.mediaType, digest: blob.digest, size: blob.size };
      if (blob.path) entry.file = blob.path.slice(dir.length + 1);
      else if (blob.bytes) entry.base64 = blob.bytes.toString('base64');
      else throw new Error(`generated blob ${blob.digest} has neither path nor bytes`);
      return entry;
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

async function push(registry: RegistryServer, image: BenchImage): Promise<void> {
  const target: PushTarget = { url: registry.url, repository: REPOSITORY };
  const started = performance.now();
  const queue = [...image.blobs];
  await Promise.all(
    Array.from({ length: 4 }, async () => {
      for (let blob = queue.shift(); blob; blob = queue.shift()) await pushBlob(target, blob);
    }),
  );
  await pushManifest(target, image.manifest.digest, image.manifest);
  await pushManifest(target, TAG, image.manifest);
  log(`pushed docker.io/${REPOSITORY}:${TAG} in ${seconds(performance.now() - started)} s`);
}

// ---------------------------------------------------------------------------------------------
// image-cache

interface RunResult {
  ms: number;
  rssBytes?: number;
  cpuSeconds?: number;
  note?: string;
}

interface Server {
  child: ChildProcess;
  pid: number;
  url: string;
  output(): string;
  stop(): Promise<void>;
}

/** The AWS backend of one run: the emulators and the run's own bucket and table. */
interface AwsRun {
  emulators: AwsEmulators;
  names: { bucket: string; table: string };
}

async function startServer(
  registry: RegistryServer,
  dataDir: string,
  options: Options,
  aws?: AwsRun,
): Promise<Server> {
  let lastError: unknown;
  for (let attempt = 1; attempt <= 5; attempt++) {
    const port = await freePort();
    try {
      return await launchServer(registry, dataDir, port, options, aws);
    } catch (error) {
      lastError = error;
      if (!/EADDRINUSE|address already in use/.test(String(error))) break;
    }
  }
  throw lastError;
}

async function launchServer(
  registry: RegistryServer,
  dataDir: string,
  port: number,
  options: Options,
  aws?: AwsRun,
): Promise<Server> {
  const nodeArgs: string[] = [];
  if (options.cpuProf) {
    const profDir = join(CACHE_ROOT, 'profiles');
    await mkdir(profDir, { recursive: true });
    nodeArgs.push('--cpu-prof', `--cpu-prof-dir=${profDir}`);
  }
  const args = [
    ...nodeArgs,
    join(ROOT, 'bin', 'image-cache.js'),
    'serve',
    '--host',
    '127.0.0.1',
    '--port',
    String(port),
    '--data',
    dataDir,
  ];
  if (options.concurrency !== undefined) args.push('--concurrency', String(options.concurrency));
  if (aws) args.push('--backend', 'aws', '--create-resources');
  // Node itself, not npm or npx: the pid must be the server for /proc/<pid>/status.
  const child = spawn(process.execPath, args, {
    cwd: ROOT,
    env: {
      ...process.env,
      IMAGE_CACHE_REGISTRIES: `docker.io=${registry.url}`,
      ...(aws && {
        ...aws.emulators.env,
        IMAGE_CACHE_BUCKET: aws.names.bucket,
        IMAGE_CACHE_TABLE: aws.names.table,
      }),
    },
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

async function verifyStore(dataDir: string, image: BenchImage): Promise<void> {
  for (const blob of image.blobs) {
    const hex = blob.digest.slice('sha256:'.length);
    const path = join(dataDir, 'blobs', 'sha256', hex);
    const info = await stat(path).catch(() => undefined);
    if (!info) throw new Error(`verify: ${blob.digest} missing at ${path}`);
    if (info.size !== blob.size) {
      throw new Error(`verify: ${path} has ${info.size} bytes, expected ${blob.size}`);
    }
    const actual = await sha256File(path);
    if (actual !== hex) throw new Error(`verify: ${path} hashes to sha256:${actual}`);
  }
}

/** Every blob read back from S3: present, the right size, hashing to its digest. */
async function verifyAwsStore(aws: AwsRun, image: BenchImage): Promise<void> {
  const { blobs, close } = openAwsAdapters(aws.emulators, aws.names);
  try {
    for (const blob of image.blobs) {
      const info = await blobs.stat(blob.digest);
      if (!info) throw new Error(`verify: ${blob.digest} missing in s3://${aws.names.bucket}`);
      if (info.size !== blob.size) {
        throw new Error(
          `verify: ${blob.digest} has ${info.size} bytes in S3, expected ${blob.size}`,
        );
      }
      const hash = createHash('sha256');
      await pipeline(await blobs.read(blob.digest), hash);
      const actual = `sha256:${hash.digest('hex')}`;
      if (actual !== blob.digest) throw new Error(`verify: ${blob.digest} hashes to ${actual}`);
    }
  } finally {
    close();
  }
}

function timedOut(error: unknown, timeoutMs: number, what: string): Error {
  const name = (error as Error | undefined)?.name;
  if (name === 'TimeoutError' || name === 'AbortError') {
    return new Error(`${what} did not finish within ${timeoutMs / 1000} s (see --timeout-s)`);
  }
  return error instanceof Error ? error : new Error(String(error));
}

interface PullTrace {
  firstByteMs: number;
  lines: number;
  lastStatus: string;
  /** First and last time (ms after the request started) each kind of status line arrived. */
  phases: Map<string, { first: number; last: number }>;
}

/** `Digest: sha256:...` and `Status: Downloaded newer image for ...` count as one kind each. */
function statusKind(status: string): string {
  const colon = status.indexOf(':');
  return colon > 0 && colon < 12 ? status.slice(0, colon) : status;
}

function phaseSummary(trace: PullTrace, ms: number): string {
  const at = (kind: string, which: 'first' | 'last') => {
    const phase = trace.phases.get(kind);
    return phase ? seconds(phase[which]) : '-';
  };
  return (
    `first byte ${seconds(trace.firstByteMs)}, downloading ${at('Downloading', 'first')}..` +
    `${at('Downloading', 'last')}, last "Download complete" ${at('Download complete', 'last')}, ` +
    `last "Pull complete" ${at('Pull complete', 'last')}, end ${seconds(ms)} s; ` +
    `${trace.lines} lines, last "${trace.lastStatus.slice(0, 60)}"`
  );
}

async function pullOnce(server: Server, timeoutMs: number): Promise<PullTrace & { ms: number }> {
  const query = new URLSearchParams({ fromImage: `docker.io/${REPOSITORY}`, tag: TAG });
  const started = performance.now();
  const response = await request(`${server.url}/images/create?${query}`, {
    method: 'POST',
    headersTimeout: 0,
    bodyTimeout: 0,
    signal: AbortSignal.timeout(timeoutMs),
  }).catch((error: unknown) => {
    throw timedOut(error, timeoutMs, 'pull');
  });
  const firstByteMs = performance.now() - started;
  let buffered = '';
  let lines = 0;
  let lastStatus = '';
  const phases = new Map<string, { first: number; last: number }>();
  const errors: string[] = [];
  const handle = (line: string) => {
    if (line.trim() === '') return;
    lines++;
    let event: Record<string, unknown>;
    try {
      event = JSON.parse(line) as Record<string, unknown>;
    } catch {
      errors.push(`not JSON: ${line.slice(0, 200)}`);
      return;
    }
    if (event.error !== undefined || event.errorDetail !== undefined) {
      errors.push(String(event.error ?? JSON.stringify(event.errorDetail)));
    }
    if (typeof event.status === 'string') {
      lastStatus = event.status;
      const now = performance.now() - started;
      const kind = statusKind(event.status);
      const phase = phases.get(kind);
      if (phase) phase.last = now;
      else phases.set(kind, { first: now, last: now });
    }
  };
  response.body.setEncoding('utf8');
  try {
    for await (const chunk of response.body as AsyncIterable<string>) {
      buffered += chunk;
      let nl = buffered.indexOf('\n');
      while (nl !== -1) {
        handle(buffered.slice(0, nl));
        buffered = buffered.slice(nl + 1);
        nl = buffered.indexOf('\n');
      }
    }
  } catch (error) {
    throw timedOut(error, timeoutMs, `pull (last status "${lastStatus}", ${lines} lines)`);
  }
  handle(buffered);
  const ms = performance.now() - started;
  if (response.statusCode !== 200) {
    throw new Error(
      `pull answered HTTP ${response.statusCode}: ${errors.join('; ') || lastStatus}`,
    );
  }
  if (errors.length > 0) throw new Error(`pull failed: ${errors.join('; ')}`);
  return { ms, firstByteMs, lines, lastStatus, phases };
}

async function runImageCache(
  registry: RegistryServer,
  image: BenchImage,
  options: Options,
  emulators?: AwsEmulators,
): Promise<RunResult> {
  const data = await tempDir('bench-data');
  const aws: AwsRun | undefined = emulators && { emulators, names: freshResourceNames() };
  let server: Server | undefined;
  try {
    server = await startServer(registry, data.path, options, aws);
    const idleRss = await statusField(server.pid, 'VmRSS');
    const cpuBefore = await cpuSeconds(server.pid);
    let pull: PullTrace & { ms: number };
    try {
      pull = await pullOnce(server, options.timeoutMs);
    } catch (error) {
      throw new Error(`${(error as Error).message}\n--- server output ---\n${server.output()}`);
    }
    const rssBytes = await statusField(server.pid, 'VmHWM');
    const cpu = (await cpuSeconds(server.pid)) - cpuBefore;
    await server.stop();
    if (aws) await verifyAwsStore(aws, image);
    else await verifyStore(data.path, image);
    return {
      ms: pull.ms,
      rssBytes,
      cpuSeconds: cpu,
      note: `idle RSS ${(idleRss / MiB).toFixed(1)} MiB; ${phaseSummary(pull, pull.ms)}`,
    };
  } finally {
    await server?.stop();
    await data.cleanup();
    // fauxqs holds objects in memory: empty the run's bucket before the next run.
    if (aws) await aws.emulators.s3.removeBucket(aws.names.bucket).catch(() => undefined);
  }
}

// ---------------------------------------------------------------------------------------------
// skopeo

const TIME_BIN = '/usr/bin/time';

async function runSkopeo(
  registry: RegistryServer,
  image: BenchImage,
  timeoutMs: number,
): Promise<RunResult> {
  const out = await tempDir('bench-skopeo');
  try {
    const dest = join(out.path, 'image');
    const skopeoArgs = ['copy', '--src-tls-verify=false'];
    if (!existsSync('/etc/containers/policy.json')) skopeoArgs.unshift('--insecure-policy');
    skopeoArgs.push(`docker://${registry.host}/${REPOSITORY}:${TAG}`, `dir:${dest}`);
    const useTime = existsSync(TIME_BIN);
    const timeFile = join(out.path, 'time.txt');
    const [command, args] = useTime
      ? [TIME_BIN, ['-f', '%M %U %S', '-o', timeFile, 'skopeo', ...skopeoArgs]]
      : ['skopeo', skopeoArgs];
    let output = '';
    const started = performance.now();
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const collect = (chunk: Buffer) => {
      output = (output + chunk.toString()).slice(-16 * 1024);
    };
    child.stdout!.on('data', collect);
    child.stderr!.on('data', collect);
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    const { code, signal } = await waitExit(child).finally(() => clearTimeout(timer));
    const ms = performance.now() - started;
    if (ms >= timeoutMs) throw new Error(`skopeo copy did not finish within ${timeoutMs / 1000} s`);
    if (code !== 0)
      throw new Error(`skopeo copy failed (code ${code}, signal ${signal}):\n${output}`);
    for (const layer of image.layers) {
      const path = join(dest, layer.digest.slice('sha256:'.length));
      const info = await stat(path).catch(() => undefined);
      if (!info || info.size !== layer.size) throw new Error(`skopeo output lacks ${layer.digest}`);
    }
    if (!useTime) return { ms, note: `${TIME_BIN} missing: no RSS` };
    const [maxKb, user, sys] = (await readFile(timeFile, 'utf8')).trim().split(/\s+/).map(Number);
    return { ms, rssBytes: maxKb! * 1024, cpuSeconds: user! + sys! };
  } finally {
    await out.cleanup();
  }
}

// ---------------------------------------------------------------------------------------------
// Report

async function machine(): Promise<string[]> {
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

function pad(value: string, width: number, right = false): string {
  return right ? value.padStart(width) : value.padEnd(width);
}

function printReport(
  options: Options,
  image: BenchImage,
  results: Map<Tool, RunResult[]>,
  machineLines: string[],
): void {
  const transferBytes =
    image.blobs.reduce((sum, b) => sum + b.size, 0) + image.manifest.bytes.length;
  const out: string[] = [];
  out.push('');
  out.push('== image pull benchmark ==');
  for (const line of machineLines) out.push(line);
  out.push(
    `image: docker.io/${REPOSITORY}:${TAG}, ${image.layers.length} gzip layers (level ${options.gzipLevel}), ` +
      `${(image.fileBytes / MiB).toFixed(0)} MiB of files, ${(transferBytes / MiB).toFixed(1)} MiB to transfer`,
  );
  out.push(`runs per tool: ${options.runs}, alternating; page cache not dropped (no root)`);
  out.push('');
  out.push('per run:');
  for (const [tool, runs] of results) {
    runs.forEach((run, i) => {
      const rss = run.rssBytes === undefined ? 'n/a' : `${(run.rssBytes / MiB).toFixed(1)} MiB`;
      const cpu = run.cpuSeconds === undefined ? 'n/a' : `${run.cpuSeconds.toFixed(2)} s`;
      out.push(
        `  ${pad(tool, 15)} #${i + 1}  ${seconds(run.ms)} s  rss ${rss}  cpu ${cpu}${run.note ? `  (${run.note})` : ''}`,
      );
    });
  }
  out.push('');
  const header = `${pad('tool', 15)} ${pad('runs', 5, true)} ${pad('median s', 9, true)} ${pad('MB/s', 8, true)} ${pad('peak RSS MiB', 13, true)} ${pad('median CPU s', 13, true)}`;
  out.push(header);
  out.push('-'.repeat(header.length));
  const medians = new Map<Tool, number>();
  const peaks = new Map<Tool, number | undefined>();
  for (const [tool, runs] of results) {
    const m = median(runs.map((r) => r.ms));
    medians.set(tool, m);
    const rss = runs.map((r) => r.rssBytes).filter((v): v is number => v !== undefined);
    const peak = rss.length ? Math.max(...rss) : undefined;
    peaks.set(tool, peak);
    const cpu = runs.map((r) => r.cpuSeconds).filter((v): v is number => v !== undefined);
    out.push(
      `${pad(tool, 15)} ${pad(String(runs.length), 5, true)} ${pad(seconds(m), 9, true)} ` +
        `${pad((transferBytes / 1e6 / (m / 1000)).toFixed(1), 8, true)} ` +
        `${pad(peak === undefined ? 'n/a' : (peak / MiB).toFixed(1), 13, true)} ` +
        `${pad(cpu.length ? median(cpu).toFixed(2) : 'n/a', 13, true)}`,
    );
  }
  out.push('');
  const ic = medians.get('image-cache');
  const sk = medians.get('skopeo');
  if (ic !== undefined && sk !== undefined) {
    const ratio = ic / sk;
    out.push(`ratio image-cache/skopeo (median time): ${ratio.toFixed(2)}`);
    out.push(
      `${ratio <= 1 ? 'PASS' : 'FAIL'}: image-cache no slower than skopeo ` +
        `(${seconds(ic)} s vs ${seconds(sk)} s)`,
    );
  } else {
    out.push('SKIP: image-cache no slower than skopeo (needs both tools)');
  }
  const icPeak = peaks.get('image-cache');
  if (ic !== undefined && icPeak !== undefined) {
    out.push(
      `${icPeak < RSS_TARGET_BYTES ? 'PASS' : 'FAIL'}: server peak RSS < 200 MB ` +
        `(${(icPeak / 1e6).toFixed(1)} MB = ${(icPeak / MiB).toFixed(1)} MiB)`,
    );
  } else {
    out.push('SKIP: server peak RSS < 200 MB (image-cache not run)');
  }
  const aws = medians.get('image-cache-aws');
  const awsPeak = peaks.get('image-cache-aws');
  if (aws !== undefined) {
    out.push(
      `AWS backend (DynamoDB Local + fauxqs on 127.0.0.1): median ${seconds(aws)} s` +
        (ic === undefined ? '' : `, ${(aws / ic).toFixed(2)}x the embedded default`) +
        (sk === undefined ? '' : `, ${(aws / sk).toFixed(2)}x skopeo`) +
        (awsPeak === undefined ? '' : `; server peak RSS ${(awsPeak / MiB).toFixed(1)} MiB`),
    );
  }
  if (results.has('skopeo') && peaks.get('skopeo') === undefined) {
    out.push(`note: skopeo RSS not measured (${TIME_BIN} missing; apt-get install time)`);
  }
  process.stdout.write(`${out.join('\n')}\n`);
}

// ---------------------------------------------------------------------------------------------
// Main

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  if (options.tools.includes('skopeo')) {
    await execFileP('skopeo', ['--version']).catch(() => {
      throw new Error('skopeo is not installed (apt-get install skopeo)');
    });
  }
  const machineLines = await machine();
  const image = await benchImage(options);

  const cleanups: (() => Promise<void>)[] = [];
  const cleanup = async () => {
    for (const fn of cleanups.splice(0).reverse()) await fn().catch(() => undefined);
  };
  const onSignal = (signal: NodeJS.Signals) => {
    log(`${signal}: cleaning up`);
    void cleanup().finally(() => process.exit(1));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  try {
    log('starting docker-registry ...');
    const registry = await startRegistry();
    cleanups.push(() => registry.stop());
    log(`registry at ${registry.url}`);
    await push(registry, image);

    let emulators: AwsEmulators | undefined;
    if (options.tools.includes('image-cache-aws')) {
      log('starting DynamoDB Local and fauxqs ...');
      cleanups.push(() => stopAwsEmulators());
      emulators = await awsEmulators();
      log(`DynamoDB Local at ${emulators.dynamo.endpoint}, fauxqs at ${emulators.s3.endpoint}`);
    }

    const results = new Map<Tool, RunResult[]>(options.tools.map((t) => [t, []]));
    for (let run = 1; run <= options.runs; run++) {
      // a, b, a, b, ...: neither tool gets all the warm-cache runs.
      for (const tool of options.tools) {
        log(`run ${run}/${options.runs}: ${tool} ...`);
        const result =
          tool === 'image-cache'
            ? await runImageCache(registry, image, options)
            : tool === 'image-cache-aws'
              ? await runImageCache(registry, image, options, emulators)
              : await runSkopeo(registry, image, options.timeoutMs);
        log(
          `  ${seconds(result.ms)} s` +
            (result.rssBytes === undefined
              ? ''
              : `, peak RSS ${(result.rssBytes / MiB).toFixed(1)} MiB`) +
            (tool === 'skopeo' ? '' : ', store verified'),
        );
        results.get(tool)!.push(result);
      }
    }
    printReport(options, image, results, machineLines);
  } finally {
    await cleanup();
  }
}

main().then(
  () => {
    process.exitCode = 0;
  },
  (error: unknown) => {
    process.stderr.write(
      `bench:pull failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    );
    process.exitCode = 1;
  },
);
