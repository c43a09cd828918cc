/**
 * Load benchmark: the server's `POST /images/load` vs `skopeo copy docker-archive:... dir:...`,
 * both reading the same docker-archive tarball.
 *
 *   npm run bench:load                              # ~1 GiB tarball in 8 layers, 3 runs each
 *   npm run bench:load -- --size-mib 64 --runs 1    # quick smoke run
 *
 * Flags: --size-mib N (default 1024), --layers N (8), --runs N (3), --seed S ("bench-load").
 *
 * Setup (not timed): generate an image with uncompressed layers (random, incompressible file
 * data) into .bench/load-<seed>-<size>-<layers>/, write it as an OCI layout and let skopeo turn
 * it into `image.tar` (`docker-archive:`), so the input is what skopeo itself writes. Cached.
 *
 * Runs alternate the tools so neither gets all the warm page-cache runs:
 *   image-cache  a fresh `node bin/image-cache.js serve` child (node spawned directly, so its pid
 *                is the server) with an empty data dir; timed from the first byte of the POST
 *                (streamed from the file) until the response ended. Peak RSS is VmHWM of the
 *                server process. The answer must name the tag and the image must list with the
 *                expected ID and size.
 *   skopeo       `skopeo copy docker-archive:<tar> dir:<fresh tmp>`, under /usr/bin/time for RSS.
 * Exit status: 0 when the benchmark ran (even if a target is missed), 1 on any error.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { link, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { request } from 'undici';
import { digestHex } from '../lib/digest.ts';
import { MediaType } from '../lib/media-types.ts';
import { generateImage, Rng, splitBytes } from '../test/support/image-factory.ts';
import { tempDir } from '../test/support/tmp.ts';
import {
  CACHE_ROOT,
  cpuSeconds,
  execFileP,
  log,
  MiB,
  median,
  RSS_TARGET_BYTES,
  type ServerChild,
  startServerChild,
  statusField,
} from './support.ts';
import { IMAGE_SIZE_FLAGS, type ImageSizeOptions, imageSizeOptions } from './support-options.ts';
import { runSkopeoTimed, skopeoPolicy } from './support-skopeo.ts';

const TAG = 'bench/load:1';

type Options = ImageSizeOptions;

interface Bench {
  tar: string;
  tarBytes: number;
  configDigest: string;
  fileBytes: number;
}

interface RunResult {
  ms: number;
  rssBytes?: number;
  cpuSeconds?: number;
}

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: { ...IMAGE_SIZE_FLAGS, seed: { type: 'string', default: 'bench-load' } },
    strict: true,
    allowPositionals: false,
  });
  return imageSizeOptions(values);
}

// ---------------------------------------------------------------------------------------------
// The tarball (generated once, cached under .bench/)

async function benchTarball(options: Options): Promise<Bench> {
  const dir = join(CACHE_ROOT, `load-${options.seed}-${options.sizeMiB}m-${options.layers}l`);
  const metaPath = join(dir, 'meta.json');
  const tar = join(dir, 'image.tar');
  if (existsSync(metaPath) && existsSync(tar)) {
    log(`reusing ${tar}`);
    return JSON.parse(await readFile(metaPath, 'utf8')) as Bench;
  }
  await rm(dir, { recursive: true, force: true });
  const layoutDir = join(dir, 'oci');
  const blobDir = join(layoutDir, 'blobs', 'sha256');
  await mkdir(blobDir, { recursive: true });
  log(`generating ${options.sizeMiB} MiB in ${options.layers} uncompressed layers ...`);
  const sizes = splitBytes(new Rng(`${options.seed}/sizes`), options.sizeMiB * MiB, options.layers);
  const image = await generateImage({
    seed: options.seed,
    dir: blobDir,
    layers: sizes.map((totalBytes) => ({ totalBytes, compression: 'none' as const })),
  });
  for (const layer of image.layers) {
    const target = join(blobDir, digestHex(layer.digest));
    if (layer.path !== target) await link(layer.path!, target);
  }
  await writeFile(join(blobDir, digestHex(image.configBlob.digest)), image.configBlob.bytes);
  await writeFile(join(blobDir, digestHex(image.digest)), image.bytes);
  await writeFile(join(layoutDir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  await writeFile(
    join(layoutDir, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaType.ociIndex,
      manifests: [{ mediaType: image.mediaType, digest: image.digest, size: image.size }],
    }),
  );
  log('skopeo copy oci: -> docker-archive: ...');
  await execFileP(
    'skopeo',
    [...skopeoPolicy(), 'copy', `oci:${layoutDir}`, `docker-archive:${tar}:${TAG}`],
    { maxBuffer: 16 * MiB },
  );
  await rm(layoutDir, { recursive: true, force: true });
  const bench: Bench = {
    tar,
    tarBytes: (await stat(tar)).size,
    configDigest: image.configBlob.digest,
    fileBytes: image.fileBytes,
  };
  await writeFile(metaPath, JSON.stringify(bench));
  return bench;
}

// ---------------------------------------------------------------------------------------------
// Runs

function startServer(dataDir: string): Promise<ServerChild> {
  return startServerChild({ dataDir, registries: '' });
}

function uploadWithCurl(url: string, file: string): Promise<{ statusCode: number; text: string }> {
  return new Promise((resolve, reject) => {
    execFile(
      'curl',
      [
        '-sS',
        '-X',
        'POST',
        '-T',
        file,
        '-H',
        'Content-Type: application/x-tar',
        '-w',
        '\n%{http_code}',
        url,
      ],
      { maxBuffer: 16 * MiB },
      (error, stdout) => {
        if (error) return reject(error);
        const cut = stdout.lastIndexOf('\n');
        resolve({ statusCode: Number(stdout.slice(cut + 1)), text: stdout.slice(0, cut) });
      },
    );
  });
}

async function runImageCache(bench: Bench): Promise<RunResult> {
  const data = await tempDir('bench-load-data');
  const server = await startServer(data.path);
  try {
    const cpuBefore = await cpuSeconds(server.pid);
    const started = performance.now();
    // curl streams the file as CI pipelines would (-T reads it in pieces, --data-binary would
    // buffer it whole); it also keeps this benchmark's own process off the two cores.
    const { statusCode, text } = await uploadWithCurl(
      `${server.url}/images/load?quiet=1`,
      bench.tar,
    );
    const ms = performance.now() - started;
    if (statusCode !== 200 || !text.includes(`Loaded image: ${TAG}`)) {
      throw new Error(`load failed (${statusCode}): ${text}\n${server.output()}`);
    }
    const rssBytes = await statusField(server.pid, 'VmHWM');
    const cpu = (await cpuSeconds(server.pid)) - cpuBefore;
    const list = await request(`${server.url}/images/json`);
    const images = (await list.body.json()) as { Id: string; Size: number }[];
    const row = images.find((i) => i.Id === bench.configDigest);
    if (!row || row.Size !== bench.fileBytes) {
      throw new Error(`loaded image not listed as expected: ${JSON.stringify(images)}`);
    }
    return { ms, rssBytes, cpuSeconds: cpu };
  } finally {
    await server.stop();
    await data.cleanup();
  }
}

async function runSkopeo(bench: Bench): Promise<RunResult> {
  const out = await tempDir('bench-load-skopeo');
  try {
    const args = [
      ...skopeoPolicy(),
      'copy',
      `docker-archive:${bench.tar}`,
      `dir:${join(out.path, 'image')}`,
    ];
    const run = await runSkopeoTimed(args, join(out.path, 'time.txt'), {
      keepOutput: Number.POSITIVE_INFINITY,
    });
    if (run.code !== 0) throw new Error(`skopeo copy failed (${run.code}): ${run.output}`);
    if (!run.timed) return { ms: run.ms };
    return { ms: run.ms, rssBytes: run.rssBytes, cpuSeconds: run.cpuSeconds };
  } finally {
    await out.cleanup();
  }
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  const bench = await benchTarball(options);
  const results = { 'image-cache': [] as RunResult[], skopeo: [] as RunResult[] };
  for (let run = 1; run <= options.runs; run++) {
    for (const tool of ['image-cache', 'skopeo'] as const) {
      const result = tool === 'image-cache' ? await runImageCache(bench) : await runSkopeo(bench);
      results[tool].push(result);
      log(
        `run ${run} ${tool}: ${(result.ms / 1000).toFixed(2)} s` +
          (result.rssBytes ? `, peak RSS ${(result.rssBytes / 1e6).toFixed(0)} MB` : ''),
      );
    }
  }
  const cpu = cpus();
  const lines: string[] = [
    '',
    '== image load benchmark ==',
    `cores: ${cpu.length} (${cpu[0]?.model.trim() ?? 'unknown'}), memory: ${(totalmem() / 2 ** 30).toFixed(1)} GiB, node: ${process.version}`,
    `skopeo: ${(await execFileP('skopeo', ['--version'])).stdout.trim()}, tmpdir: ${tmpdir()}`,
    `tarball: docker-archive written by skopeo, ${options.layers} uncompressed layers, ${(bench.tarBytes / MiB).toFixed(1)} MiB (${bench.tar})`,
    `runs: ${options.runs} per tool, alternating`,
    '',
    `${'tool'.padEnd(12)} ${'median s'.padStart(9)} ${'MB/s'.padStart(8)} ${'peak RSS MB'.padStart(12)} ${'CPU s'.padStart(7)}   runs (s)`,
  ];
  const medians: Record<string, number> = {};
  for (const [tool, runs] of Object.entries(results)) {
    const ms = median(runs.map((r) => r.ms));
    medians[tool] = ms;
    const rss = Math.max(...runs.map((r) => r.rssBytes ?? 0));
    const cpuS = median(runs.map((r) => r.cpuSeconds ?? 0));
    lines.push(
      `${tool.padEnd(12)} ${(ms / 1000).toFixed(2).padStart(9)} ${(bench.tarBytes / 1e6 / (ms / 1000)).toFixed(0).padStart(8)} ` +
        `${(rss ? (rss / 1e6).toFixed(0) : 'n/a').padStart(12)} ${cpuS.toFixed(2).padStart(7)}   ${runs.map((r) => (r.ms / 1000).toFixed(2)).join(', ')}`,
    );
  }
  const ratio = medians['image-cache']! / medians.skopeo!;
  const rss = Math.max(...results['image-cache'].map((r) => r.rssBytes ?? 0));
  lines.push('');
  lines.push(
    `ratio image-cache / skopeo: ${ratio.toFixed(2)} (target <= 1.00: ${ratio <= 1 ? 'met' : 'MISSED'})`,
  );
  lines.push(
    `server peak RSS: ${(rss / 1e6).toFixed(0)} MB (target < ${RSS_TARGET_BYTES / 1e6} MB: ${rss < RSS_TARGET_BYTES ? 'met' : 'MISSED'})`,
  );
  process.stdout.write(`${lines.join('\n')}\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(
    `${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  process.exitCode = 1;
});
