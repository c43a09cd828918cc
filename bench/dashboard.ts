/**
 * What the dashboard costs: the size of its assets (as sent and gzipped), and the time to answer
 * the request its image table makes (`GET /cache/images`) beside `GET /images/json` (`docker
 * image ls`, the peer that reads the same entries) at 100 and 1,000 images on the embedded
 * backend (SQLite), over HTTP on 127.0.0.1.
 *
 *   npm run bench:dashboard                       # 100 and 1000 images
 *   npm run bench:dashboard -- --images 100,5000  # other sizes (comma list)
 *
 * The images are catalog records with small real blobs, written through the ports before the
 * server starts, each tagged, with a digest ref, one in ten pinned. Times are the median of
 * --runs requests after one warm-up; they depend on the machine.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { gzipSync } from 'node:zlib';
import { FsBlobStore } from '../lib/adapters/fs-blob-store.ts';
import { SqliteCatalog } from '../lib/adapters/sqlite-catalog.ts';
import { startCacheServer } from '../test/support/cache-server.ts';
import { seedImage } from '../test/support/seed-images.ts';
import { log, median, positiveInt, runMain } from './support.ts';

function parseOptions(argv: string[]): { images: number[]; runs: number } {
  const { values } = parseArgs({
    args: argv,
    options: {
      images: { type: 'string', default: '100,1000' },
      runs: { type: 'string', default: '15' },
    },
  });
  return {
    images: values.images.split(',').map((n) => positiveInt(n.trim(), '--images')),
    runs: positiveInt(values.runs, '--runs'),
  };
}

async function timed(url: string): Promise<{ ms: number; bytes: number }> {
  const started = performance.now();
  const response = await fetch(url);
  const body = await response.arrayBuffer();
  if (response.status !== 200) throw new Error(`${url} answered ${response.status}`);
  return { ms: performance.now() - started, bytes: body.byteLength };
}

async function medianOf(url: string, runs: number): Promise<{ ms: number; bytes: number }> {
  const first = await timed(url);
  const times: number[] = [];
  for (let i = 0; i < runs; i++) times.push((await timed(url)).ms);
  return { ms: median(times), bytes: first.bytes };
}

async function seed(dataDir: string, count: number): Promise<void> {
  const catalog = new SqliteCatalog(join(dataDir, 'catalog.db'));
  const blobs = new FsBlobStore(dataDir);
  const now = Date.now();
  try {
    for (let i = 0; i < count; i++) {
      const image = await seedImage(
        { catalog, blobs },
        {
          name: `bench-${i}`,
          // A base layer every image shares and one of its own, as real images do.
          layers: [
            ['base', 2048],
            [`own-${i}`, 512],
          ],
          tags: [[`docker.io/team/app-${i % 50}`, `v${i}`]],
          digestRef: `docker.io/team/app-${i % 50}`,
          now: now - i * 60_000,
        },
      );
      if (i % 10 === 0) {
        await catalog.putPin({
          name: `docker.io/team/app-${i % 50}:v${i}`,
          manifest: image.manifest,
          note: 'bench',
          createdAt: now,
        });
      }
    }
  } finally {
    catalog.close();
  }
}

async function assetSizes(baseUrl: string): Promise<void> {
  const page = await fetch(new URL('/cache/ui/', baseUrl));
  const html = await page.text();
  const names = [...html.matchAll(/(?:href|src)="(app\.[0-9a-f]+\.(?:css|js))"/g)].map(
    (m) => m[1]!,
  );
  const rows: Array<[string, string]> = [['/cache/ui/', html]];
  for (const name of names) {
    rows.push([
      `/cache/ui/${name}`,
      await (await fetch(new URL(`/cache/ui/${name}`, baseUrl))).text(),
    ]);
  }
  let total = 0;
  let gzipped = 0;
  console.log('| asset | bytes | gzipped |');
  console.log('|---|---:|---:|');
  for (const [path, body] of rows) {
    const size = Buffer.byteLength(body);
    const gz = gzipSync(body).byteLength;
    total += size;
    gzipped += gz;
    console.log(`| ${path} | ${size} | ${gz} |`);
  }
  console.log(`| total | ${total} | ${gzipped} |`);
}

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  let printedAssets = false;
  const results: string[] = [];
  for (const count of options.images) {
    const dataDir = await mkdtemp(join(tmpdir(), 'image-cache-bench-dashboard-'));
    try {
      log(`seeding ${count} images`);
      await seed(dataDir, count);
      const server = await startCacheServer({ registries: '', dataDir });
      try {
        if (!printedAssets) {
          await assetSizes(server.url);
          printedAssets = true;
        }
        const usage = await medianOf(new URL('/cache/images', server.url).href, options.runs);
        const ls = await medianOf(new URL('/images/json', server.url).href, options.runs);
        results.push(
          `| ${count} | ${usage.ms.toFixed(1)} ms | ${usage.bytes} | ${ls.ms.toFixed(1)} ms | ${ls.bytes} |`,
        );
      } finally {
        await server.close();
      }
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  }
  console.log('');
  console.log('| images | GET /cache/images | bytes | GET /images/json (image ls) | bytes |');
  console.log('|---:|---:|---:|---:|---:|');
  for (const row of results) console.log(row);
}

runMain('bench:dashboard', main);
