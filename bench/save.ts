/**
 * Save benchmark: `docker save` by the cache (HTTP GET of /images/{name}/get streamed to a
 * file) vs `skopeo copy docker://... docker-archive:...` from the local registry the cache
 * pulled the same image from.
 *
 *   npm run bench:save                               # 1 GiB image in 8 layers, 3 runs each
 *   npm run bench:save -- --size-mib 64 --runs 1     # quick smoke run
 *
 * Flags:
 *   --size-mib N     file content of the image in MiB (default 1024)
 *   --layers N       layer count (default 8)
 *   --runs N         runs per tool (default 3)
 *   --seed S         generator seed (default "bench")
 *   --gzip-level N   gzip level of the generated layers (default 1)
 *   --tools LIST     comma list of image-cache,skopeo (default both)
 *   --timeout-s N    give up on a single save after N s (default 60 + size-mib / 2)
 *
 * Setup (not timed): docker-registry with temp storage; the image generated (or reused from
 * .bench/, shared with bench:pull) and pushed as library/bench:1; one
 * `node bin/image-cache.js serve` child (pid = the server) with an empty data dir pulls it.
 * Then the server's peak RSS is reset (`/proc/<pid>/clear_refs`), so the reported peak is
 * what saving took; the lifetime peak (pull included) is shown beside it.
 *
 * Runs alternate (image-cache, skopeo, image-cache, ...):
 *   image-cache  GET /images/bench:1/get with undici, piped to a file in a fresh temp folder;
 *                timed from the request until the file is closed. The file must be exactly
 *                Content-Length long; the first run's tar listing is checked against the image.
 *   skopeo       `skopeo copy --src-tls-verify=false docker://<registry>/library/bench:1
 *                docker-archive:<file>:bench:1`, under /usr/bin/time for peak RSS and CPU.
 *                Note skopeo's docker-archive writer stores layers uncompressed (it gunzips
 *                them), while the cache writes them as stored; both read the same bytes.
 * The OS page cache is not dropped; alternating keeps that fair. MB/s = compressed image bytes
 * (manifest + config + layers) / median seconds, MB = 10^6 bytes.
 */
import { createWriteStream } from 'node:fs';
import { rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { parseArgs } from 'node:util';
import { request } from 'undici';
import { tempDir } from '../test/support/tmp.ts';
import {
  type BenchImage,
  cpuSeconds,
  execFileP,
  log,
  MiB,
  pad,
  RSS_TARGET_BYTES,
  resetPeakRss,
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
import { runSkopeoTimed, skopeoPolicy } from './support-skopeo.ts';

type Tool = 'image-cache' | 'skopeo';
const TOOLS: readonly Tool[] = ['image-cache', 'skopeo'];

interface Options extends ImageBenchOptions {
  tools: Tool[];
}

interface RunResult {
  ms: number;
  bytes: number;
  rssBytes?: number;
  cpuSeconds?: number;
}

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: { ...IMAGE_BENCH_FLAGS, tools: { type: 'string', default: 'image-cache,skopeo' } },
    strict: true,
    allowPositionals: false,
  });
  return { ...imageBenchOptions(values), tools: toolList(values.tools, TOOLS) };
}

async function pullIntoCache(server: ServerChild): Promise<void> {
  const query = new URLSearchParams({ fromImage: `docker.io/${BENCH_REPOSITORY}`, tag: BENCH_TAG });
  const started = performance.now();
  const response = await request(`${server.url}/images/create?${query}`, {
    method: 'POST',
    headersTimeout: 0,
    bodyTimeout: 0,
  });
  const body = await response.body.text();
  const failed = body
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as { error?: string })
    .find((m) => m.error);
  if (response.statusCode !== 200 || failed) {
    throw new Error(`pull failed (HTTP ${response.statusCode}): ${failed?.error ?? body}`);
  }
  log(`pulled into the cache in ${seconds(performance.now() - started)} s (not timed)`);
}

async function runImageCache(
  server: ServerChild,
  file: string,
  timeoutMs: number,
): Promise<RunResult> {
  const cpuBefore = await cpuSeconds(server.pid);
  const started = performance.now();
  const response = await request(`${server.url}/images/bench:${BENCH_TAG}/get`, {
    headersTimeout: 0,
    bodyTimeout: 0,
    signal: AbortSignal.timeout(timeoutMs),
  });
  if (response.statusCode !== 200) {
    throw new Error(`save answered HTTP ${response.statusCode}: ${await response.body.text()}`);
  }
  await pipeline(response.body, createWriteStream(file));
  const ms = performance.now() - started;
  const length = Number(response.headers['content-length']);
  const { size } = await stat(file);
  if (size !== length) throw new Error(`saved ${size} bytes, Content-Length said ${length}`);
  return {
    ms,
    bytes: size,
    rssBytes: await statusField(server.pid, 'VmHWM'),
    cpuSeconds: (await cpuSeconds(server.pid)) - cpuBefore,
  };
}

/** The tar lists every blob of the image with its size, plus the Docker metadata files. */
async function checkTarListing(file: string, image: BenchImage): Promise<void> {
  const { stdout } = await execFileP('tar', ['-tvf', file], { maxBuffer: 16 * MiB });
  const sizes = new Map<string, number>();
  for (const line of stdout.trim().split('\n')) {
    const parts = line.trim().split(/\s+/);
    sizes.set(parts.at(-1)!, Number(parts[2]));
  }
  for (const name of ['oci-layout', 'index.json', 'manifest.json', 'repositories']) {
    if (!sizes.has(name)) throw new Error(`saved tar lacks ${name}`);
  }
  const blobs = [
    { digest: image.manifest.digest, size: image.manifest.bytes.length },
    ...image.blobs,
  ];
  for (const blob of blobs) {
    const name = `blobs/sha256/${blob.digest.slice(7)}`;
    if (sizes.get(name) !== blob.size) throw new Error(`saved tar: ${name} missing or wrong size`);
  }
}

async function runSkopeo(
  registryHost: string,
  file: string,
  timeoutMs: number,
): Promise<RunResult> {
  const args = [
    ...skopeoPolicy(),
    'copy',
    '--src-tls-verify=false',
    `docker://${registryHost}/${BENCH_REPOSITORY}:${BENCH_TAG}`,
    `docker-archive:${file}:bench:${BENCH_TAG}`,
  ];
  const run = await runSkopeoTimed(args, `${file}.time`, { timeoutMs });
  if (run.code !== 0)
    throw new Error(`skopeo copy failed (code ${run.code}, signal ${run.signal}):\n${run.output}`);
  const { size } = await stat(file);
  if (!run.timed) return { ms: run.ms, bytes: size };
  return { ms: run.ms, bytes: size, rssBytes: run.rssBytes, cpuSeconds: run.cpuSeconds };
}

function printReport(
  options: Options,
  image: BenchImage,
  results: Map<Tool, RunResult[]>,
  machine: string[],
  server: { pullPeak: number; lifetimePeak: number; peakReset: boolean },
): void {
  const bytes = imageBytes(image);
  const out: string[] = ['', '== image save benchmark ==', ...machine];
  out.push(imageLine(image, options.gzipLevel, 'compressed'));
  out.push(`runs per tool: ${options.runs}, alternating; page cache not dropped`);
  out.push('', 'per run:');
  for (const [tool, runs] of results) {
    runs.forEach((run, i) => {
      out.push(
        `  ${pad(tool, 12)} #${i + 1}  ${seconds(run.ms)} s  ` +
          `tar ${(run.bytes / MiB).toFixed(1)} MiB  ${rssAndCpu(run)}`,
      );
    });
  }
  out.push('');
  const { lines: table, medians, peaks } = summaryTable(results, 12, bytes);
  out.push(...table);
  out.push('');
  if (results.has('image-cache')) {
    out.push(
      `server peak RSS: during saves ${(peaks.get('image-cache')! / MiB).toFixed(1)} MiB` +
        `${server.peakReset ? '' : ' (peak could not be reset: includes the pull)'}; ` +
        `after the pull ${(server.pullPeak / MiB).toFixed(1)} MiB; ` +
        `lifetime ${(server.lifetimePeak / MiB).toFixed(1)} MiB`,
    );
  }
  const ic = medians.get('image-cache');
  const sk = medians.get('skopeo');
  out.push(...speedVerdict(ic, sk));
  const icPeak = peaks.get('image-cache');
  if (icPeak !== undefined) {
    const worst = Math.max(icPeak, server.lifetimePeak);
    out.push(
      `${worst < RSS_TARGET_BYTES ? 'PASS' : 'FAIL'}: server peak RSS < 200 MB ` +
        `(lifetime peak ${(worst / 1e6).toFixed(1)} MB = ${(worst / MiB).toFixed(1)} MiB)`,
    );
  }
  process.stdout.write(`${out.join('\n')}\n`);
}

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  const skopeo = options.tools.includes('skopeo');
  const push = { repository: BENCH_REPOSITORY, tag: BENCH_TAG };
  await withBenchRegistry(
    { ...options, skopeo },
    push,
    async ({ registry, image, machine, cleanups }) => {
      const data = await tempDir('bench-save-data');
      cleanups.push(() => data.cleanup());
      const server = await startServerChild({
        dataDir: data.path,
        registries: `docker.io=${registry.url}`,
      });
      cleanups.push(() => server.stop());
      await pullIntoCache(server);
      const pullPeak = await statusField(server.pid, 'VmHWM');
      const peakReset = await resetPeakRss(server.pid);

      const outDir = await tempDir('bench-save-out');
      cleanups.push(() => outDir.cleanup());
      let lifetimePeak = pullPeak;
      const results = await alternateRuns(
        options.tools,
        options.runs,
        async (tool, run) => {
          const file = join(outDir.path, `${tool}-${run}.tar`);
          const result =
            tool === 'image-cache'
              ? await runImageCache(server, file, options.timeoutMs).catch((error: Error) => {
                  throw new Error(`${error.message}\n--- server output ---\n${server.output()}`);
                })
              : await runSkopeo(registry.host, file, options.timeoutMs);
          if (tool === 'image-cache') {
            lifetimePeak = Math.max(lifetimePeak, result.rssBytes ?? 0);
            if (run === 1) await checkTarListing(file, image);
          }
          await rm(file, { force: true });
          return result;
        },
        (result) =>
          `${seconds(result.ms)} s, ${(result.bytes / MiB).toFixed(1)} MiB${peakRssNote(result.rssBytes)}`,
      );
      printReport(options, image, results, machine, { pullPeak, lifetimePeak, peakReset });
    },
  );
}

runMain('bench:save', main);
