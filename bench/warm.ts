/**
 * Warm-cache benchmark: pre-warming a list (`POST /cache/warm`) and saving with
 * `GET /images/get?pull=missing`, each beside what a CI script does without them, on N small
 * distinct images from a local docker-registry behind a counting proxy.
 *
 *   npm run bench:warm                       # warm N=20 and 200, save N=5 and 50, embedded
 *   npm run bench:warm -- --backend aws      # and the AWS backend on DynamoDB Local + fauxqs
 *   npm run bench:warm -- --quick            # warm N=5 and 50, save N=2 and 20
 *
 * Flags:
 *   --warm-n N       images of the usual warm case (default 20); the second case has 10 N
 *   --save-n N       images of the usual save case (default 5); the second case has 10 N
 *   --quick          --warm-n 5 --save-n 2
 *   --runs N         runs per case and tool, alternating (default 1)
 *   --backend aws    also run every case on the AWS backend (`serve --backend aws
 *                    --create-resources`, a fresh bucket and table per server), beside embedded
 *   --seed S         generator seed (default "warm")
 *   --cases LIST     comma list of warm,save (default both)
 *   --cpu-prof       run each server with `node --cpu-prof`; profiles land in .bench/profiles/
 *
 * Setup (not timed): docker-registry with temp storage; 10 * max(warm-n, save-n) images, each
 * two small random gzip layers of its own (about 200 KiB an image), pushed as
 * library/warm-<i>:1; a counting proxy (bench/support-counting-proxy.ts) in front of it,
 * named as docker.io to every server.
 *
 * Every run starts a fresh `node bin/image-cache.js serve` child with an empty store, so each
 * tool pulls every image from the upstream. Cases (times from the first request to the last
 * answer; upstream requests from the proxy, per image):
 *   warm         POST /cache/warm of the N references, then every job followed as
 *                `image-cache warm --wait` does (GET /cache/jobs/<id>?wait=25, all at once)
 *                until each succeeded. Then the same POST again, once stored: its time and its
 *                upstream GETs (must be 0) are reported on their own line.
 *   engine-pulls the peer: POST /images/create?fromImage=...&tag=1 for each image, one after
 *                another, each NDJSON stream read to its end (a CI pre-pull script).
 *   save-pull    GET /images/get?names=<all N>&pull=missing streamed to a file.
 *   pull+save    the peer: the N Engine API pulls one after another, then GET /images/get of
 *                all N. Both save cases check the tar's manifest.json names N images.
 * Peak RSS is the server's VmHWM from /proc after the run (emulators not included).
 */
import { createWriteStream } from 'node:fs';
import { mkdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { parseArgs } from 'node:util';
import { request } from 'undici';
import {
  type AwsEmulators,
  awsEmulators,
  freshResourceNames,
  stopAwsEmulators,
} from '../test/support/aws-emulators.ts';
import { startRegistry } from '../test/support/registry-server.ts';
import { tempDir } from '../test/support/tmp.ts';
import {
  CACHE_ROOT,
  cleanupStack,
  execFileP,
  log,
  MiB,
  machineLines,
  pad,
  positiveInt,
  runMain,
  type ServerChild,
  seconds,
  startServerChild,
  statusField,
} from './support.ts';
import { type CountingProxy, startCountingProxy } from './support-counting-proxy.ts';
import {
  pushSmallImages,
  type SmallImage,
  type UpstreamCounts,
  upstreamCounts,
} from './support-image-set.ts';
import { toolList } from './support-options.ts';
import { alternateRuns, peakRssNote } from './support-runs.ts';

type Backend = 'embedded' | 'aws';
type Tool = 'warm' | 'engine-pulls' | 'save-pull' | 'pull+save';

interface Options {
  warmN: number;
  saveN: number;
  runs: number;
  backends: Backend[];
  seed: string;
  cases: Case[];
  cpuProf: boolean;
}

type Case = 'warm' | 'save';
const CASES: readonly Case[] = ['warm', 'save'];

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      'warm-n': { type: 'string', default: '20' },
      'save-n': { type: 'string', default: '5' },
      quick: { type: 'boolean', default: false },
      runs: { type: 'string', default: '1' },
      backend: { type: 'string', default: 'embedded' },
      seed: { type: 'string', default: 'warm' },
      cases: { type: 'string', default: 'warm,save' },
      'cpu-prof': { type: 'boolean', default: false },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.backend !== 'embedded' && values.backend !== 'aws') {
    throw new Error('--backend must be embedded or aws');
  }
  return {
    warmN: values.quick ? 5 : positiveInt(values['warm-n'], '--warm-n'),
    saveN: values.quick ? 2 : positiveInt(values['save-n'], '--save-n'),
    runs: positiveInt(values.runs, '--runs'),
    backends: values.backend === 'aws' ? ['embedded', 'aws'] : ['embedded'],
    seed: values.seed,
    cases: toolList(values.cases, CASES),
    cpuProf: values['cpu-prof'],
  };
}

// ---------------------------------------------------------------------------------------------
// One server per run

interface Bench {
  proxy: CountingProxy;
  emulators?: AwsEmulators;
  /** Node's flags for every server (--cpu-prof). */
  nodeArgs: string[];
}

interface RunResult {
  ms: number;
  upstream: UpstreamCounts;
  rssBytes: number;
  /** Tarball bytes of the save cases. */
  tarBytes?: number;
  /** The warm case's second POST of the same list. */
  again?: { ms: number; upstream: UpstreamCounts };
}

/** Starts a fresh server on `backend`, runs `body` against it, stops and removes it. */
async function withServer<T>(
  bench: Bench,
  backend: Backend,
  body: (server: ServerChild) => Promise<T>,
): Promise<T> {
  const data = await tempDir('bench-warm-data');
  const names = backend === 'aws' ? freshResourceNames() : undefined;
  let server: ServerChild | undefined;
  try {
    server = await startServerChild({
      dataDir: data.path,
      registries: `docker.io=${bench.proxy.url}`,
      nodeArgs: bench.nodeArgs,
      extraArgs: names ? ['--backend', 'aws', '--create-resources'] : [],
      env: names && {
        ...bench.emulators!.env,
        IMAGE_CACHE_BUCKET: names.bucket,
        IMAGE_CACHE_TABLE: names.table,
      },
    });
    const running = server;
    return await body(running).catch((error: Error) => {
      throw new Error(`${error.message}\n--- server output ---\n${running.output()}`);
    });
  } finally {
    await server?.stop();
    await data.cleanup();
    // fauxqs holds objects in memory: empty the run's bucket before the next run.
    if (names) await bench.emulators!.s3.removeBucket(names.bucket).catch(() => undefined);
  }
}

/** `body`'s time and the upstream requests it caused. */
async function counted(
  proxy: CountingProxy,
  body: () => Promise<void>,
): Promise<{ ms: number; upstream: UpstreamCounts }> {
  proxy.reset();
  const started = performance.now();
  await body();
  return { ms: performance.now() - started, upstream: upstreamCounts(proxy.counts) };
}

async function engineJson<T>(url: string, init: { method: 'GET' | 'POST'; body?: string }) {
  const response = await request(url, {
    ...init,
    headers: { 'content-type': 'application/json' },
    headersTimeout: 0,
    bodyTimeout: 0,
  });
  const text = await response.body.text();
  if (response.statusCode >= 300) {
    throw new Error(`${init.method} ${url}: HTTP ${response.statusCode}: ${text}`);
  }
  return JSON.parse(text) as T;
}

interface JobView {
  status: string;
  error?: { message?: string };
}

/** POST /cache/warm, then each job long-polled until it ended, as `warm --wait` follows them. */
async function warmList(server: ServerChild, images: SmallImage[]): Promise<void> {
  const body = JSON.stringify({ images: images.map((image) => image.reference) });
  const { jobs } = await engineJson<{ jobs: { url: string; reference: string }[] }>(
    `${server.url}/cache/warm`,
    { method: 'POST', body },
  );
  await Promise.all(
    jobs.map(async (job) => {
      for (;;) {
        const view = await engineJson<JobView>(`${server.url}${job.url}?wait=25`, {
          method: 'GET',
        });
        if (view.status === 'succeeded') return;
        if (view.status === 'failed' || view.status === 'cancelled') {
          throw new Error(`warm of ${job.reference} ${view.status}: ${view.error?.message}`);
        }
      }
    }),
  );
}

/** One Engine API pull, its progress stream read to the end; a line with "error" fails it. */
async function enginePull(server: ServerChild, image: SmallImage): Promise<void> {
  const [name, tag] = image.reference.split(':') as [string, string];
  const query = new URLSearchParams({ fromImage: name, tag });
  const response = await request(`${server.url}/images/create?${query}`, {
    method: 'POST',
    headersTimeout: 0,
    bodyTimeout: 0,
  });
  const text = await response.body.text();
  if (response.statusCode !== 200 || text.includes('"error"')) {
    throw new Error(`pull of ${image.reference}: HTTP ${response.statusCode}: ${text.slice(-500)}`);
  }
}

/** GET /images/get of every image to `file`; its size, after checking manifest.json lists all. */
async function saveAll(
  server: ServerChild,
  images: SmallImage[],
  file: string,
  pull: boolean,
): Promise<number> {
  const query = new URLSearchParams();
  for (const image of images) query.append('names', image.reference);
  if (pull) query.set('pull', 'missing');
  const response = await request(`${server.url}/images/get?${query}`, {
    headersTimeout: 0,
    bodyTimeout: 0,
  });
  if (response.statusCode !== 200) {
    throw new Error(`save answered HTTP ${response.statusCode}: ${await response.body.text()}`);
  }
  await pipeline(response.body, createWriteStream(file));
  const { stdout } = await execFileP('tar', ['-xOf', file, 'manifest.json'], {
    maxBuffer: 16 * MiB,
  });
  const entries = JSON.parse(stdout) as unknown[];
  if (entries.length !== images.length) {
    throw new Error(`saved tar lists ${entries.length} images, expected ${images.length}`);
  }
  return (await stat(file)).size;
}

async function runTool(
  bench: Bench,
  backend: Backend,
  tool: Tool,
  images: SmallImage[],
): Promise<RunResult> {
  return withServer(bench, backend, async (server) => {
    const pullEach = async () => {
      for (const image of images) await enginePull(server, image);
    };
    const out = await tempDir('bench-warm-out');
    const file = join(out.path, 'save.tar');
    let tarBytes: number | undefined;
    try {
      if (tool === 'warm') {
        const first = await counted(bench.proxy, () => warmList(server, images));
        const again = await counted(bench.proxy, () => warmList(server, images));
        return { ...first, again, rssBytes: await statusField(server.pid, 'VmHWM') };
      }
      const run = await counted(bench.proxy, async () => {
        if (tool === 'engine-pulls') return pullEach();
        if (tool === 'pull+save') await pullEach();
        tarBytes = await saveAll(server, images, file, tool === 'save-pull');
      });
      return { ...run, tarBytes, rssBytes: await statusField(server.pid, 'VmHWM') };
    } finally {
      await out.cleanup();
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Report

interface CaseResult {
  backend: Backend;
  n: number;
  tool: Tool;
  runs: RunResult[];
}

const HEADER =
  `${pad('backend', 9)}${pad('tool', 13)}${pad('N', 5, true)}${pad('wall s', 9, true)}` +
  `${pad('ms/image', 10, true)}${pad('MB/s', 7, true)}${pad('man GET', 9, true)}` +
  `${pad('man HEAD', 9, true)}${pad('blob GET', 9, true)}${pad('other', 7, true)}` +
  `${pad('peak RSS MiB', 13, true)}`;

function perImage(total: number, n: number): string {
  return (total / n).toFixed(2);
}

/** The row of the run with the median time (the first of the two middle ones). */
function row(result: CaseResult): string {
  const sorted = [...result.runs].sort((a, b) => a.ms - b.ms);
  const run = sorted[Math.floor((sorted.length - 1) / 2)]!;
  const { n } = result;
  const up = run.upstream;
  const rate = run.tarBytes === undefined ? '' : (run.tarBytes / 1e6 / (run.ms / 1000)).toFixed(1);
  const peak = Math.max(...result.runs.map((r) => r.rssBytes));
  return (
    `${pad(result.backend, 9)}${pad(result.tool, 13)}${pad(String(n), 5, true)}` +
    `${pad(seconds(run.ms), 9, true)}${pad((run.ms / n).toFixed(1), 10, true)}${pad(rate, 7, true)}` +
    `${pad(perImage(up.manifestGets, n), 9, true)}${pad(perImage(up.manifestHeads, n), 9, true)}` +
    `${pad(perImage(up.blobGets, n), 9, true)}${pad(perImage(up.other, n), 7, true)}` +
    `${pad((peak / MiB).toFixed(1), 13, true)}`
  );
}

function againLine(result: CaseResult): string {
  const agains = result.runs.map((r) => r.again!);
  const gets = Math.max(...agains.map((a) => a.upstream.manifestGets + a.upstream.blobGets));
  const heads = Math.max(...agains.map((a) => a.upstream.manifestHeads));
  const ms = Math.max(...agains.map((a) => a.ms));
  return (
    `${gets === 0 ? 'PASS' : 'FAIL'}: ${result.backend} second POST /cache/warm of the same ` +
    `${result.n} images: ${gets} upstream GETs, ${heads} manifest HEADs, ${seconds(ms)} s`
  );
}

function ratioLine(results: CaseResult[], backend: Backend, ours: Tool, peer: Tool): string[] {
  const median = (tool: Tool, n: number) => {
    const runs = results.find((r) => r.backend === backend && r.tool === tool && r.n === n)!.runs;
    const sorted = runs.map((r) => r.ms).sort((a, b) => a - b);
    return sorted[Math.floor((sorted.length - 1) / 2)]!;
  };
  const ns = [
    ...new Set(results.filter((r) => r.backend === backend && r.tool === ours).map((r) => r.n)),
  ];
  const parts = ns.map((n) => `N=${n} ${(median(ours, n) / median(peer, n)).toFixed(2)}`);
  const [small, large] = ns;
  const growth = (tool: Tool) => (median(tool, large!) / median(tool, small!)).toFixed(1);
  return [
    `${backend}: ${ours}/${peer} time ratio ${parts.join(', ')}; ` +
      `${large! / small!}x the images took ${growth(ours)}x (${ours}) and ${growth(peer)}x (${peer})`,
  ];
}

function printReport(
  options: Options,
  results: CaseResult[],
  machine: string[],
  images: SmallImage[],
): void {
  const average = images.reduce((sum, image) => sum + image.bytes, 0) / images.length;
  const out = ['', '== warm cache benchmark: pre-warm and save pull=missing ==', ...machine];
  out.push(
    `images: distinct, 2 random gzip layers each, ${(average / 1024).toFixed(0)} KiB on ` +
      `average; runs per case: ${options.runs} (median shown); upstream requests per image ` +
      'through the counting proxy',
    '',
    HEADER,
    '-'.repeat(HEADER.length),
  );
  for (const result of results) out.push(row(result));
  out.push('');
  for (const result of results.filter((r) => r.tool === 'warm')) out.push(againLine(result));
  for (const backend of options.backends) {
    if (options.cases.includes('warm')) {
      out.push(...ratioLine(results, backend, 'warm', 'engine-pulls'));
    }
    if (options.cases.includes('save')) {
      out.push(...ratioLine(results, backend, 'save-pull', 'pull+save'));
    }
  }
  process.stdout.write(`${out.join('\n')}\n`);
}

// ---------------------------------------------------------------------------------------------
// Main

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  const machine = await machineLines();
  const cleanups = cleanupStack();
  try {
    const registry = await startRegistry();
    cleanups.push(() => registry.stop());
    const all = await pushSmallImages(
      registry,
      10 *
        Math.max(
          options.cases.includes('warm') ? options.warmN : 0,
          options.cases.includes('save') ? options.saveN : 0,
        ),
      'warm',
      options.seed,
    );
    const proxy = await startCountingProxy(registry.url);
    cleanups.push(() => proxy.stop());
    const nodeArgs: string[] = [];
    if (options.cpuProf) {
      const profDir = join(CACHE_ROOT, 'profiles');
      await mkdir(profDir, { recursive: true });
      nodeArgs.push('--cpu-prof', `--cpu-prof-dir=${profDir}`);
    }
    const bench: Bench = { proxy, nodeArgs };
    if (options.backends.includes('aws')) {
      log('starting DynamoDB Local and fauxqs ...');
      cleanups.push(() => stopAwsEmulators());
      bench.emulators = await awsEmulators();
    }
    const cases: [Tool, Tool, number][] = [];
    if (options.cases.includes('warm')) {
      cases.push(
        ['warm', 'engine-pulls', options.warmN],
        ['warm', 'engine-pulls', options.warmN * 10],
      );
    }
    if (options.cases.includes('save')) {
      cases.push(
        ['save-pull', 'pull+save', options.saveN],
        ['save-pull', 'pull+save', options.saveN * 10],
      );
    }
    const results: CaseResult[] = [];
    for (const backend of options.backends) {
      for (const [ours, peer, n] of cases) {
        log(`${backend}: ${ours} vs ${peer}, N=${n}`);
        const images = all.slice(0, n);
        const runs = await alternateRuns(
          [ours, peer],
          options.runs,
          (tool) => runTool(bench, backend, tool, images),
          (result) => `${seconds(result.ms)} s${peakRssNote(result.rssBytes)}`,
        );
        for (const [tool, list] of runs) results.push({ backend, n, tool, runs: list });
      }
    }
    printReport(options, results, machine, all);
  } finally {
    await cleanups.run();
  }
}

runMain('bench:warm', main);
