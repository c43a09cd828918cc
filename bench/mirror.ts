/**
 * Registry mirror benchmark: `skopeo copy` of one image straight from a local CNCF distribution
 * registry (Debian `docker-registry`) on 127.0.0.1, against the same copy through the cache's
 * registry door (`/v2/`), cold and warm; then many clients missing the same image at once.
 *
 *   npm run bench:mirror                                # 1 GiB image in 8 layers, 3 runs each
 *   npm run bench:mirror -- --size-mib 64 --runs 1      # quick smoke run
 *   npm run bench:mirror -- --scale 10 --runs 1         # ten times larger: 10 GiB, 80 layers
 *
 * Flags:
 *   --size-mib N     file content of the image in MiB (default 1024)
 *   --layers N       layer count (default 8)
 *   --scale N        multiplies --size-mib and --layers (default 1); `--scale 10` is the case
 *                    ten times larger than the usual one (10240 MiB in 80 layers; the image is
 *                    generated into .bench/ once, about 11 GiB there, and every copy writes it
 *                    to the temp dir again; expect the better part of an hour)
 *   --runs N         runs per case (default 3)
 *   --seed S         generator seed (default "bench")
 *   --gzip-level N   gzip level of the generated layers (default 1)
 *   --clients N      clients of the concurrent-miss case (default 10; 0 skips it)
 *   --timeout-s N    give up on a single copy after N s (default 60 + size-mib / 2)
 *
 * Setup (not timed): start docker-registry with temp storage; generate the image or reuse it
 * from .bench/ (shared with bench/pull.ts); push it as docker.io/library/bench:1.
 *
 * Timed cases, interleaved per run (direct, cold, warm, direct, cold, warm, ...), each
 * `skopeo copy --src-tls-verify=false docker://<host>/library/bench:1 dir:<fresh tmp dir>`,
 * timed from spawn to exit (under /usr/bin/time for skopeo's own RSS and CPU when present):
 *   direct  <host> is the registry.
 *   cold    <host> is a fresh `node bin/image-cache.js serve` child (empty data dir, new process
 *           every run, IMAGE_CACHE_REGISTRIES=docker.io=<registry>): the path names no
 *           registry, so the door serves docker.io/library/bench:1 from the registry, each blob
 *           streamed to skopeo while it is stored. After the copy (not timed) the benchmark
 *           waits until the door's background fill has tagged the image (GET
 *           /images/docker.io/library/bench:1/json answers 200), so the warm copy does not race
 *           it.
 *   warm    the same copy again from the same server, now served from its store.
 * The server's peak RSS (VmHWM from /proc; reset with clear_refs before the warm copy where the
 * kernel allows, so warm is measured on its own) and CPU (utime+stime during the copy) are
 * read from /proc. The table's RSS and CPU columns are skopeo's for direct and the server's for
 * cold and warm; the per-run lines give both.
 *
 * Concurrent misses (not timed against a target): a fresh server whose upstream is a counting
 * proxy (node:http, bodies piped, bench/support-counting-proxy.ts) in front of the registry;
 * N clients in this process (undici) each GET the manifest by tag and then every blob (3 at a
 * time, all in the same order, so they collide on every blob), hashing each body against its
 * digest. Once all are done and the fill has tagged the image, the proxy's counts give the
 * upstream GETs per blob (target: exactly 1). The proxy is only in this case, never in the
 * timed ones.
 *
 * Caveats: the OS page cache cannot be dropped without root, so after the first run the
 * registry's blob files are read from memory, and the warm copy reads the store the cold copy
 * has just written (from memory, as a cache that keeps its working set would); interleaving
 * keeps direct and cold fair. skopeo verifies every blob's digest as it copies; the output
 * folder's layer sizes are checked. MB/s is compressed bytes transferred (manifest + config +
 * layers) / median seconds, MB = 10^6 bytes. Exit status: 0 when the benchmark ran (even if a
 * target is missed), 1 on any error.
 */
import { createHash } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { request } from 'undici';
import { IMAGE_MANIFEST_MEDIA_TYPES, INDEX_MEDIA_TYPES } from '../lib/media-types.ts';
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
  resetPeakRss,
  runMain,
  type ServerChild,
  seconds,
  startServerChild,
  statusField,
} from './support.ts';
import { type CountingProxy, startCountingProxy } from './support-counting-proxy.ts';
import { IMAGE_BENCH_FLAGS, type ImageBenchOptions, imageBenchOptions } from './support-options.ts';
import { imageBytes, imageLine, summaryTable } from './support-report.ts';
import { BENCH_REPOSITORY, BENCH_TAG, withBenchRegistry } from './support-runs.ts';
import { runSkopeoTimed, skopeoPolicy, TIME_BIN } from './support-skopeo.ts';

const COLD_TARGET = 1.15;
const WARM_TARGET = 1.0;
/** Blob downloads each concurrent client has under way at once (dockerd's default is 3). */
const CLIENT_PARALLEL_BLOBS = 3;

// ---------------------------------------------------------------------------------------------
// Options

interface Options extends ImageBenchOptions {
  scale: number;
  clients: number;
  cpuProf: boolean;
}

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      ...IMAGE_BENCH_FLAGS,
      scale: { type: 'string', default: '1' },
      clients: { type: 'string', default: '10' },
      'cpu-prof': { type: 'boolean', default: false },
    },
    strict: true,
    allowPositionals: false,
  });
  const clients = Number(values.clients);
  if (!Number.isInteger(clients) || clients < 0) {
    throw new Error('--clients must be a non-negative integer');
  }
  const scale = positiveInt(values.scale, '--scale');
  return {
    ...imageBenchOptions(values, scale),
    scale,
    clients,
    cpuProf: values['cpu-prof'] === true,
  };
}

// ---------------------------------------------------------------------------------------------
// One copy

type Case = 'direct' | 'cold' | 'warm';

interface RunResult {
  ms: number;
  /** Skopeo's for direct, the server's for cold and warm (what the table shows). */
  rssBytes?: number;
  cpuSeconds?: number;
  skopeoRss?: number;
  skopeoCpu?: number;
  note?: string;
}

/** `skopeo copy docker://<host>/library/bench:1 dir:<fresh tmp>`; the layers' sizes checked. */
async function skopeoCopy(
  host: string,
  image: BenchImage,
  timeoutMs: number,
): Promise<{ ms: number; rssBytes?: number; cpuSeconds?: number }> {
  const out = await tempDir('bench-mirror');
  try {
    const dest = join(out.path, 'image');
    const source = `docker://${host}/${BENCH_REPOSITORY}:${BENCH_TAG}`;
    const args = [...skopeoPolicy(), 'copy', '--src-tls-verify=false', source, `dir:${dest}`];
    const run = await runSkopeoTimed(args, out.file('time.txt'), { timeoutMs });
    if (run.code !== 0 || run.signal !== null) {
      const why = run.ms >= timeoutMs ? `killed after ${timeoutMs / 1000} s (--timeout-s)` : '';
      throw new Error(
        `skopeo copy ${source} failed (code ${run.code}, signal ${run.signal}) ${why}:\n${run.output}`,
      );
    }
    for (const layer of image.layers) {
      const info = await stat(join(dest, layer.digest.slice('sha256:'.length))).catch(
        () => undefined,
      );
      if (info?.size !== layer.size) {
        throw new Error(`skopeo copy from ${host}: ${layer.digest} missing or of the wrong size`);
      }
    }
    return { ms: run.ms, rssBytes: run.rssBytes, cpuSeconds: run.cpuSeconds };
  } finally {
    await out.cleanup();
  }
}

function hostOf(url: string): string {
  return new URL(url).host;
}

/** Error text with the server's output attached, for failures the door may be behind. */
function withServerOutput(error: unknown, server: ServerChild): Error {
  const message = error instanceof Error ? error.message : String(error);
  return new Error(`${message}\n--- image-cache server output ---\n${server.output()}`);
}

/**
 * Waits until the door's background fill tagged the image (the Engine API knows the tag);
 * answers the milliseconds waited.
 */
async function waitForFill(server: ServerChild, timeoutMs: number): Promise<number> {
  const started = performance.now();
  const url = `${server.url}/images/docker.io/${BENCH_REPOSITORY}:${BENCH_TAG}/json`;
  for (;;) {
    const response = await request(url);
    await response.body.dump();
    if (response.statusCode === 200) return performance.now() - started;
    if (performance.now() - started > timeoutMs) {
      throw new Error(
        `the fill did not tag docker.io/${BENCH_REPOSITORY}:${BENCH_TAG} within ${timeoutMs / 1000} s ` +
          `after the copy (GET ${url} still answers ${response.statusCode})`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** With --cpu-prof, servers write V8 CPU profiles here (one per server process). */
const PROFILE_DIR = join(CACHE_ROOT, 'profiles');
let profileServers = false;

async function startCache(
  registryUrl: string,
): Promise<{ server: ServerChild; done(): Promise<void> }> {
  const data = await tempDir('bench-mirror-data');
  try {
    const server = await startServerChild({
      dataDir: data.path,
      registries: `docker.io=${registryUrl}`,
      ...(profileServers && { nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${PROFILE_DIR}`] }),
    });
    return {
      server,
      done: async () => {
        await server.stop();
        await data.cleanup();
      },
    };
  } catch (error) {
    await data.cleanup();
    throw error;
  }
}

const mib = (bytes: number | undefined) =>
  bytes === undefined ? 'n/a' : `${(bytes / MiB).toFixed(1)} MiB`;

/** One cold copy through a fresh server, then one warm copy from the same server. */
async function coldAndWarm(
  registry: RegistryServer,
  image: BenchImage,
  options: Options,
): Promise<{ cold: RunResult; warm: RunResult }> {
  const cache = await startCache(registry.url);
  const { server } = cache;
  try {
    const host = hostOf(server.url);
    const idleRss = await statusField(server.pid, 'VmRSS');
    let cpu = await cpuSeconds(server.pid);
    let cold: RunResult;
    try {
      const copy = await skopeoCopy(host, image, options.timeoutMs);
      const copyCpu = (await cpuSeconds(server.pid)) - cpu;
      const fillMs = await waitForFill(server, options.timeoutMs);
      const fillCpu = (await cpuSeconds(server.pid)) - cpu - copyCpu;
      cold = {
        ms: copy.ms,
        rssBytes: await statusField(server.pid, 'VmHWM'),
        cpuSeconds: copyCpu,
        skopeoRss: copy.rssBytes,
        skopeoCpu: copy.cpuSeconds,
        note:
          `idle RSS ${mib(idleRss)}; fill tagged ${seconds(fillMs)} s after the copy, ` +
          `server cpu ${fillCpu.toFixed(2)} s meanwhile`,
      };
    } catch (error) {
      throw withServerOutput(error, server);
    }
    const reset = await resetPeakRss(server.pid);
    cpu = await cpuSeconds(server.pid);
    const copy = await skopeoCopy(host, image, options.timeoutMs).catch((error: unknown) => {
      throw withServerOutput(error, server);
    });
    const warm: RunResult = {
      ms: copy.ms,
      rssBytes: await statusField(server.pid, 'VmHWM'),
      cpuSeconds: (await cpuSeconds(server.pid)) - cpu,
      skopeoRss: copy.rssBytes,
      skopeoCpu: copy.cpuSeconds,
      ...(!reset && { note: 'peak RSS not reset (clear_refs refused): includes the cold copy' }),
    };
    return { cold, warm };
  } finally {
    await cache.done();
  }
}

// ---------------------------------------------------------------------------------------------
// Concurrent misses

interface ConcurrentResult {
  clients: number;
  ms: number;
  fillMs: number;
  rssBytes: number;
  cpuSeconds: number;
  /** Upstream GETs per blob of the image (0 where none was seen). */
  blobGets: Map<string, number>;
  /** Every upstream request, `<METHOD> <path>` -> count. */
  counts: Map<string, number>;
  upstreamBytes: number;
}

const MANIFEST_ACCEPT = [...IMAGE_MANIFEST_MEDIA_TYPES, ...INDEX_MEDIA_TYPES].join(', ');

/** GET url; the body hashed as it arrives must give `digest`; answers the byte count. */
async function fetchVerified(url: string, digest: string, signal: AbortSignal, accept?: string) {
  const response = await request(url, {
    headers: accept ? { accept } : {},
    signal,
    headersTimeout: 0,
    bodyTimeout: 0,
  });
  if (response.statusCode !== 200) {
    const body = (await response.body.text()).slice(0, 2000);
    throw new Error(`GET ${url} answered ${response.statusCode}: ${body}`);
  }
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const chunk of response.body as AsyncIterable<Buffer>) {
    hash.update(chunk);
    bytes += chunk.length;
  }
  const actual = `sha256:${hash.digest('hex')}`;
  if (actual !== digest) throw new Error(`GET ${url}: ${bytes} bytes hashing to ${actual}`);
  return bytes;
}

/** One registry client: the manifest by tag, then every blob, a few at a time. */
async function client(base: string, image: BenchImage, signal: AbortSignal): Promise<void> {
  const name = `${base}/v2/${BENCH_REPOSITORY}`;
  await fetchVerified(
    `${name}/manifests/${BENCH_TAG}`,
    image.manifest.digest,
    signal,
    MANIFEST_ACCEPT,
  );
  const queue = [...image.blobs];
  await Promise.all(
    Array.from({ length: CLIENT_PARALLEL_BLOBS }, async () => {
      for (let blob = queue.shift(); blob; blob = queue.shift()) {
        await fetchVerified(`${name}/blobs/${blob.digest}`, blob.digest, signal);
      }
    }),
  );
}

async function concurrentMisses(
  proxy: CountingProxy,
  image: BenchImage,
  options: Options,
): Promise<ConcurrentResult> {
  proxy.reset();
  const cache = await startCache(proxy.url);
  const { server } = cache;
  try {
    const cpu = await cpuSeconds(server.pid);
    const signal = AbortSignal.timeout(options.timeoutMs * 2);
    // Every request of every client listens on it.
    setMaxListeners(options.clients * (CLIENT_PARALLEL_BLOBS + 1) + 10, signal);
    const started = performance.now();
    let ms: number;
    let fillMs: number;
    try {
      await Promise.all(
        Array.from({ length: options.clients }, () => client(server.url, image, signal)),
      );
      ms = performance.now() - started;
      fillMs = await waitForFill(server, options.timeoutMs);
    } catch (error) {
      throw withServerOutput(error, server);
    }
    const gets = proxy.blobGets();
    return {
      clients: options.clients,
      ms,
      fillMs,
      rssBytes: await statusField(server.pid, 'VmHWM'),
      cpuSeconds: (await cpuSeconds(server.pid)) - cpu,
      blobGets: new Map(image.blobs.map((b) => [b.digest, gets.get(b.digest) ?? 0])),
      counts: new Map(proxy.counts),
      upstreamBytes: proxy.bytes(),
    };
  } finally {
    await cache.done();
  }
}

// ---------------------------------------------------------------------------------------------
// Report

function printReport(
  options: Options,
  image: BenchImage,
  results: Map<Case, RunResult[]>,
  concurrent: ConcurrentResult | undefined,
  machine: string[],
): void {
  const transferBytes = imageBytes(image);
  const out: string[] = ['', '== registry mirror benchmark ==', ...machine];
  out.push(
    imageLine(image, options.gzipLevel, 'to transfer') +
      (options.scale > 1 ? ` (--scale ${options.scale})` : ''),
  );
  out.push(
    `runs per case: ${options.runs}, interleaved direct, cold, warm; page cache not dropped (no root)`,
  );
  out.push('', 'per run (skopeo = the copying client; server = the cache):');
  for (const [which, runs] of results) {
    runs.forEach((run, i) => {
      const server =
        which === 'direct'
          ? ''
          : `  server rss ${mib(run.rssBytes)} cpu ${run.cpuSeconds?.toFixed(2)} s`;
      const skopeo =
        which === 'direct' ? run : { rssBytes: run.skopeoRss, cpuSeconds: run.skopeoCpu };
      out.push(
        `  ${pad(which, 7)} #${i + 1}  ${seconds(run.ms)} s  skopeo rss ${mib(skopeo.rssBytes)} ` +
          `cpu ${skopeo.cpuSeconds === undefined ? 'n/a' : `${skopeo.cpuSeconds.toFixed(2)} s`}` +
          `${server}${run.note ? `  (${run.note})` : ''}`,
      );
    });
  }
  out.push('', 'peak RSS and CPU: direct = skopeo; cold and warm = the cache server');
  const { lines, medians, peaks } = summaryTable(results, 7, transferBytes);
  out.push(...lines, '');
  const direct = medians.get('direct')!;
  for (const [which, target] of [
    ['cold', COLD_TARGET],
    ['warm', WARM_TARGET],
  ] as const) {
    const ratio = medians.get(which)! / direct;
    out.push(
      `${ratio <= target ? 'PASS' : 'FAIL'}: ${which} <= ${target.toFixed(2)}x direct ` +
        `(ratio ${which}/direct ${ratio.toFixed(2)}: ${seconds(medians.get(which)!)} s vs ${seconds(direct)} s)`,
    );
  }
  const serverPeak = Math.max(peaks.get('cold') ?? 0, peaks.get('warm') ?? 0);
  out.push(
    `${serverPeak < RSS_TARGET_BYTES ? 'PASS' : 'FAIL'}: server peak RSS < 200 MB ` +
      `(${(serverPeak / 1e6).toFixed(1)} MB = ${(serverPeak / MiB).toFixed(1)} MiB, cold and warm)`,
  );
  if (peaks.get('direct') === undefined) {
    out.push(`note: skopeo RSS not measured (${TIME_BIN} missing; apt-get install time)`);
  }
  if (concurrent) out.push('', ...concurrentLines(concurrent, image));
  process.stdout.write(`${out.join('\n')}\n`);
}

/** `81 blobs x1`, and `sha256:0123456789ab… x0` for each blob fetched other than once. */
function getsByCount(blobGets: Map<string, number>): string {
  const once = [...blobGets.values()].filter((n) => n === 1).length;
  const others = [...blobGets]
    .filter(([, n]) => n !== 1)
    .map(([digest, n]) => `${digest.slice(0, 19)}… x${n}`);
  return [`${once} blobs x1`, ...others].join(', ');
}

function concurrentLines(result: ConcurrentResult, image: BenchImage): string[] {
  const gets = [...result.blobGets.values()];
  const blobBytes = image.blobs.reduce((sum, b) => sum + b.size, 0);
  const other = [...result.counts]
    .filter(([key]) => !/\/blobs\/sha256:/.test(key) || !key.startsWith('GET '))
    .map(([key, n]) => `${key.replace(/sha256:([0-9a-f]{12})[0-9a-f]{52}/, 'sha256:$1…')} x${n}`);
  const lines = [
    `concurrent misses: ${result.clients} clients (undici, manifest + ${image.blobs.length} blobs each, ` +
      `${CLIENT_PARALLEL_BLOBS} at a time, bodies hashed) on a fresh cache behind a counting proxy`,
    `  all clients done in ${seconds(result.ms)} s (${((blobBytes * result.clients) / 1e6 / (result.ms / 1000)).toFixed(1)} MB/s ` +
      `to the clients together); fill tagged ${seconds(result.fillMs)} s later`,
    `  upstream GETs per blob: min ${Math.min(...gets)}, max ${Math.max(...gets)} over ${gets.length} blobs ` +
      `(${getsByCount(result.blobGets)}); upstream bytes ${(result.upstreamBytes / MiB).toFixed(1)} MiB = ` +
      `${(result.upstreamBytes / blobBytes).toFixed(2)}x the image`,
    `  other upstream requests: ${other.length ? other.join(', ') : 'none'}`,
    `  server peak RSS ${mib(result.rssBytes)}, cpu ${result.cpuSeconds.toFixed(2)} s`,
    `${gets.every((n) => n === 1) ? 'PASS' : 'FAIL'}: one upstream GET per blob with ${result.clients} clients missing at once`,
    `${result.rssBytes < RSS_TARGET_BYTES ? 'PASS' : 'FAIL'}: server peak RSS < 200 MB with ${result.clients} clients ` +
      `(${(result.rssBytes / 1e6).toFixed(1)} MB)`,
  ];
  return lines;
}

// ---------------------------------------------------------------------------------------------
// Main

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  profileServers = options.cpuProf;
  const push = {
    repository: BENCH_REPOSITORY,
    tag: BENCH_TAG,
    label: `docker.io/${BENCH_REPOSITORY}:${BENCH_TAG}`,
  };
  await withBenchRegistry(
    { ...options, skopeo: true },
    push,
    async ({ registry, image, machine, cleanups }) => {
      const results = new Map<Case, RunResult[]>([
        ['direct', []],
        ['cold', []],
        ['warm', []],
      ]);
      for (let run = 1; run <= options.runs; run++) {
        log(`run ${run}/${options.runs}: direct ...`);
        const direct = await skopeoCopy(registry.host, image, options.timeoutMs);
        results.get('direct')!.push(direct);
        log(`  ${seconds(direct.ms)} s`);
        log(`run ${run}/${options.runs}: cold, then warm ...`);
        const { cold, warm } = await coldAndWarm(registry, image, options);
        results.get('cold')!.push(cold);
        results.get('warm')!.push(warm);
        log(
          `  cold ${seconds(cold.ms)} s, warm ${seconds(warm.ms)} s, server peak RSS ${mib(cold.rssBytes)} / ${mib(warm.rssBytes)}`,
        );
      }

      let concurrent: ConcurrentResult | undefined;
      if (options.clients > 0) {
        const proxy = await startCountingProxy(registry.url);
        cleanups.push(() => proxy.stop());
        log(
          `concurrent misses: ${options.clients} clients through a counting proxy at ${proxy.url} ...`,
        );
        concurrent = await concurrentMisses(proxy, image, options);
        log(`  ${seconds(concurrent.ms)} s`);
      }
      printReport(options, image, results, concurrent, machine);
    },
  );
}

runMain('bench:mirror', main);
