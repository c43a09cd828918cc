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
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { parseArgs } from 'node:util';
import { request } from 'undici';
import {
  type AwsEmulators,
  awsEmulators,
  freshResourceNames,
  openAwsAdapters,
  stopAwsEmulators,
} from '../test/support/aws-emulators.ts';
import type { RegistryServer } from '../test/support/registry-server.ts';
import { tempDir } from '../test/support/tmp.ts';
import {
  type BenchImage,
  CACHE_ROOT,
  cpuSeconds,
  log,
  MiB,
  pad,
  positiveInt,
  RSS_TARGET_BYTES,
  runMain,
  type ServerChild,
  seconds,
  startServerChild,
  statusField,
} from './support.ts';
import {
  IMAGE_BENCH_FLAGS,
  type ImageBenchOptions,
  imageBenchOptions,
  toolList,
} from './support-options.ts';
import { imageBytes, imageLine, rssAndCpu, speedVerdict, summaryTable } from './support-report.ts';
import {
  alternateRuns,
  BENCH_REPOSITORY,
  BENCH_TAG,
  peakRssNote,
  withBenchRegistry,
} from './support-runs.ts';
import { runSkopeoTimed, skopeoPolicy, TIME_BIN } from './support-skopeo.ts';

// ---------------------------------------------------------------------------------------------
// Options

interface Options extends ImageBenchOptions {
  backend: 'embedded' | 'aws';
  tools: Tool[];
  concurrency?: number;
  cpuProf: boolean;
}

type Tool = 'image-cache' | 'image-cache-aws' | 'skopeo';
const TOOLS: readonly Tool[] = ['image-cache', 'image-cache-aws', 'skopeo'];

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      ...IMAGE_BENCH_FLAGS,
      tools: { type: 'string', default: 'image-cache,skopeo' },
      concurrency: { type: 'string' },
      'cpu-prof': { type: 'boolean', default: false },
      backend: { type: 'string', default: 'embedded' },
    },
    strict: true,
    allowPositionals: false,
  });
  const backend = values.backend;
  if (backend !== 'embedded' && backend !== 'aws') {
    throw new Error('--backend must be embedded or aws');
  }
  const tools = toolList(values.tools, TOOLS);
  // Beside the embedded default: image-cache (embedded), image-cache-aws, then skopeo.
  if (backend === 'aws' && !tools.includes('image-cache-aws')) {
    const at = tools.indexOf('image-cache');
    tools.splice(at === -1 ? 0 : at + 1, 0, 'image-cache-aws');
  }
  return {
    ...imageBenchOptions(values),
    backend,
    tools,
    concurrency:
      values.concurrency === undefined
        ? undefined
        : positiveInt(values.concurrency, '--concurrency'),
    cpuProf: values['cpu-prof'],
  };
}

// ---------------------------------------------------------------------------------------------
// Small helpers

async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(path, { highWaterMark: MiB }), hash);
  return hash.digest('hex');
}

// ---------------------------------------------------------------------------------------------
// image-cache

interface RunResult {
  ms: number;
  rssBytes?: number;
  cpuSeconds?: number;
  note?: string;
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
): Promise<ServerChild> {
  const nodeArgs: string[] = [];
  if (options.cpuProf) {
    const profDir = join(CACHE_ROOT, 'profiles');
    await mkdir(profDir, { recursive: true });
    nodeArgs.push('--cpu-prof', `--cpu-prof-dir=${profDir}`);
  }
  const extraArgs: string[] = [];
  if (options.concurrency !== undefined)
    extraArgs.push('--concurrency', String(options.concurrency));
  if (aws) extraArgs.push('--backend', 'aws', '--create-resources');
  return startServerChild({
    dataDir,
    registries: `docker.io=${registry.url}`,
    nodeArgs,
    extraArgs,
    env: aws && {
      ...aws.emulators.env,
      IMAGE_CACHE_BUCKET: aws.names.bucket,
      IMAGE_CACHE_TABLE: aws.names.table,
    },
  });
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

async function pullOnce(
  server: ServerChild,
  timeoutMs: number,
): Promise<PullTrace & { ms: number }> {
  const query = new URLSearchParams({ fromImage: `docker.io/${BENCH_REPOSITORY}`, tag: BENCH_TAG });
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
  let server: ServerChild | undefined;
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

async function runSkopeo(
  registry: RegistryServer,
  image: BenchImage,
  timeoutMs: number,
): Promise<RunResult> {
  const out = await tempDir('bench-skopeo');
  try {
    const dest = join(out.path, 'image');
    const skopeoArgs = [
      ...skopeoPolicy(),
      'copy',
      '--src-tls-verify=false',
      `docker://${registry.host}/${BENCH_REPOSITORY}:${BENCH_TAG}`,
      `dir:${dest}`,
    ];
    const run = await runSkopeoTimed(skopeoArgs, join(out.path, 'time.txt'), { timeoutMs });
    if (run.ms >= timeoutMs)
      throw new Error(`skopeo copy did not finish within ${timeoutMs / 1000} s`);
    if (run.code !== 0)
      throw new Error(
        `skopeo copy failed (code ${run.code}, signal ${run.signal}):\n${run.output}`,
      );
    for (const layer of image.layers) {
      const path = join(dest, layer.digest.slice('sha256:'.length));
      const info = await stat(path).catch(() => undefined);
      if (!info || info.size !== layer.size) throw new Error(`skopeo output lacks ${layer.digest}`);
    }
    if (!run.timed) return { ms: run.ms, note: `${TIME_BIN} missing: no RSS` };
    return { ms: run.ms, rssBytes: run.rssBytes, cpuSeconds: run.cpuSeconds };
  } finally {
    await out.cleanup();
  }
}

// ---------------------------------------------------------------------------------------------
// Report

function printReport(
  options: Options,
  image: BenchImage,
  results: Map<Tool, RunResult[]>,
  machineLines: string[],
): void {
  const transferBytes = imageBytes(image);
  const out: string[] = ['', '== image pull benchmark ==', ...machineLines];
  out.push(imageLine(image, options.gzipLevel, 'to transfer'));
  out.push(`runs per tool: ${options.runs}, alternating; page cache not dropped (no root)`);
  out.push('');
  out.push('per run:');
  for (const [tool, runs] of results) {
    runs.forEach((run, i) => {
      out.push(
        `  ${pad(tool, 15)} #${i + 1}  ${seconds(run.ms)} s  ${rssAndCpu(run)}${run.note ? `  (${run.note})` : ''}`,
      );
    });
  }
  out.push('');
  const { lines: table, medians, peaks } = summaryTable(results, 15, transferBytes);
  out.push(...table);
  out.push('');
  const ic = medians.get('image-cache');
  const sk = medians.get('skopeo');
  out.push(...speedVerdict(ic, sk));
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
  const push = {
    repository: BENCH_REPOSITORY,
    tag: BENCH_TAG,
    label: `docker.io/${BENCH_REPOSITORY}:${BENCH_TAG}`,
  };
  const skopeo = options.tools.includes('skopeo');
  await withBenchRegistry(
    { ...options, skopeo },
    push,
    async ({ registry, image, machine, cleanups }) => {
      let emulators: AwsEmulators | undefined;
      if (options.tools.includes('image-cache-aws')) {
        log('starting DynamoDB Local and fauxqs ...');
        cleanups.push(() => stopAwsEmulators());
        emulators = await awsEmulators();
        log(`DynamoDB Local at ${emulators.dynamo.endpoint}, fauxqs at ${emulators.s3.endpoint}`);
      }
      const results = await alternateRuns(
        options.tools,
        options.runs,
        (tool) =>
          tool === 'image-cache'
            ? runImageCache(registry, image, options)
            : tool === 'image-cache-aws'
              ? runImageCache(registry, image, options, emulators)
              : runSkopeo(registry, image, options.timeoutMs),
        (result, tool) =>
          `${seconds(result.ms)} s${peakRssNote(result.rssBytes)}` +
          (tool === 'skopeo' ? '' : ', store verified'),
      );
      printReport(options, image, results, machine);
    },
  );
}

runMain('bench:pull', main);
