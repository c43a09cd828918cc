/**
 * GC benchmark: time and peak memory of one collection over a synthetic catalog, at 10k, 30k
 * and 100k blobs (the largest with 10,000 images), to show how the time grows.
 *
 *   npm run bench:gc                 all three sizes
 *   npm run bench:gc -- 100000       one size
 *
 * Each size is built by one child process (SQLite rows written straight into the catalog file
 * in one transaction, plus a real FsBlobStore with one tiny file per blob whose bytes hash to
 * its name) and collected by another, so the collector's peak RSS is not the builder's.
 * About 10% of the blob records are unreferenced and old enough to go, and 1% of the files are
 * orphans (no record, an old mtime): the run deletes both, through the real adapters
 * (conditional transitions committed with synchronous=FULL, files removed from disk).
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import Database from 'better-sqlite3';
import { FsBlobStore } from '../lib/adapters/fs-blob-store.ts';
import { SqliteCatalog } from '../lib/adapters/sqlite-catalog.ts';
import { type Digest, sha256 } from '../lib/digest.ts';
import { CollectorClaims, collectGarbage } from '../lib/gc.ts';
import type { BlobStore } from '../lib/ports/blob-store.ts';
import type { Catalog } from '../lib/ports/catalog.ts';
import { systemClock } from '../lib/ports/clock.ts';

const SIZES = [10_000, 30_000, 100_000];
const LAYERS_PER_IMAGE = 9;
const SHARED_BASES = 50;
const HOUR = 3_600_000;
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

interface Plan {
  blobs: number;
  images: number;
  referenced: number;
  unreferenced: number;
  orphans: number;
}

/** Per image a config and 9 layers (the first from one of 50 shared bases); ~10% garbage. */
function plan(blobs: number): Plan {
  const images = Math.floor(blobs / 10);
  const referenced = images * (1 + LAYERS_PER_IMAGE - 1) + SHARED_BASES;
  return {
    blobs,
    images,
    referenced,
    unreferenced: blobs - referenced,
    orphans: Math.floor(blobs / 100),
  };
}

const content = (kind: string, i: number) => Buffer.from(`bench ${kind} ${i}`);

function build(dir: string, p: Plan): void {
  const store = new FsBlobStore(dir);
  mkdirSync(store.paths.sha256, { recursive: true });
  // Let the adapter create (and migrate) the schema, then write rows directly: fast, and no
  // test-only method on the port.
  new SqliteCatalog(join(dir, 'catalog.db')).close();
  const db = new Database(join(dir, 'catalog.db'));
  db.pragma('journal_mode = WAL');
  const old = Date.now() - 2 * HOUR;
  const insertBlob = db.prepare(
    `INSERT INTO blobs (digest, size, unpacked_size, state, generation, touched_at)
     VALUES (?, ?, NULL, 'live', 1, ?)`,
  );
  const insertManifest = db.prepare(
    `INSERT INTO manifests (digest, media_type, raw, blobs, children, image, config_digest,
       created_at, last_used_at) VALUES (?, ?, ?, ?, '[]', ?, ?, ?, ?)`,
  );
  const insertTag = db.prepare(
    `INSERT INTO tags (repository, tag, manifest, source, platform, updated_at, checked_at)
     VALUES (?, ?, ?, ?, NULL, ?, ?)`,
  );
  const blob = (kind: string, i: number): Digest => {
    const bytes = content(kind, i);
    const digest = sha256(bytes);
    writeFileSync(store.paths.blob(digest), bytes);
    insertBlob.run(digest, bytes.length, old);
    return digest;
  };
  db.transaction(() => {
    const bases = Array.from({ length: SHARED_BASES }, (_, i) => blob('base', i));
    for (let i = 0; i < p.images; i++) {
      const config = blob('config', i);
      const layers = [bases[i % SHARED_BASES]!];
      for (let l = 1; l < LAYERS_PER_IMAGE; l++)
        layers.push(blob('layer', i * LAYERS_PER_IMAGE + l));
      const raw = Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: OCI_MANIFEST,
          config: { digest: config },
          layers: layers.map((digest) => ({ digest })),
        }),
      );
      const digest = sha256(raw);
      const summary = {
        configDigest: config,
        os: 'linux',
        architecture: 'amd64',
        size: 0,
        labels: {},
      };
      insertManifest.run(
        digest,
        OCI_MANIFEST,
        raw,
        JSON.stringify([config, ...layers]),
        JSON.stringify(summary),
        config,
        old,
        old,
      );
      insertTag.run(`bench.test/app${i % 500}`, `v${i}`, digest, digest, old, old);
    }
    for (let i = 0; i < p.unreferenced; i++) blob('garbage', i);
  })();
  db.close();
  const past = new Date(old);
  for (let i = 0; i < p.orphans; i++) {
    const bytes = content('orphan', i);
    const path = store.paths.blob(sha256(bytes));
    writeFileSync(path, bytes);
    utimesSync(path, past, past);
  }
}

async function collect(dir: string, p: Plan): Promise<Record<string, unknown>> {
  const catalog = new SqliteCatalog(join(dir, 'catalog.db'));
  const blobs = new FsBlobStore(dir);
  const baseline = process.memoryUsage().rss;
  let peak = baseline;
  const sampler = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage().rss);
  }, 5);
  const started = performance.now();
  const phases = { listBlobsMs: 0, listManifestsMs: 0, storeListingMs: 0 };
  const report = await collectGarbage(
    {
      catalog: timedCatalog(catalog, phases),
      gcReports: catalog,
      blobs: timedListing(blobs, phases),
      clock: systemClock,
      gcClaims: new CollectorClaims(),
    },
    { graceMs: HOUR },
  );
  const elapsed = performance.now() - started;
  clearInterval(sampler);
  peak = Math.max(peak, process.memoryUsage().rss);
  const left = readdirSync(blobs.paths.sha256).length;
  const records = (await catalog.listBlobs()).length;
  catalog.close();
  const expectedDeleted = p.unreferenced + p.orphans;
  if (
    report.deleted.blobs !== expectedDeleted ||
    left !== p.referenced ||
    records !== p.referenced
  ) {
    throw new Error(
      `wrong result: deleted ${report.deleted.blobs} (want ${expectedDeleted}), ${left} files and ${records} records left (want ${p.referenced})`,
    );
  }
  return {
    elapsedMs: Math.round(elapsed),
    phases: Object.fromEntries(Object.entries(phases).map(([k, v]) => [k, Math.round(v)])),
    rssBeforeMiB: mib(baseline),
    rssPeakMiB: mib(peak),
    maxRssMiB: mib(process.resourceUsage().maxRSS * 1024),
    report,
  };
}

/** Times the collector's two big reads (the snapshot and the roots). */
function timedCatalog(
  catalog: Catalog,
  phases: { listBlobsMs: number; listManifestsMs: number },
): Catalog {
  return new Proxy(catalog, {
    get(target, property) {
      const value = Reflect.get(target, property, target);
      if (typeof value !== 'function') return value;
      if (property !== 'listBlobs' && property !== 'listManifests') return value.bind(target);
      return async () => {
        const start = performance.now();
        try {
          return await value.call(target);
        } finally {
          phases[property === 'listBlobs' ? 'listBlobsMs' : 'listManifestsMs'] +=
            performance.now() - start;
        }
      };
    },
  });
}

/** Times the store's listing (readdir + stat of every file), net of the collector's work. */
function timedListing(blobs: FsBlobStore, phases: { storeListingMs: number }): BlobStore {
  return {
    stat: (digest) => blobs.stat(digest),
    read: (digest, range) => blobs.read(digest, range),
    write: (body, expected) => blobs.write(body, expected),
    delete: (digest) => blobs.delete(digest),
    list: async function* () {
      const iterator = blobs.list()[Symbol.asyncIterator]();
      for (;;) {
        const start = performance.now();
        const next = await iterator.next();
        phases.storeListingMs += performance.now() - start;
        if (next.done) return;
        yield next.value;
      }
    },
  };
}

const mib = (bytes: number) => Math.round((bytes / 1024 / 1024) * 10) / 10;

function child(mode: 'build' | 'collect', dir: string, blobs: number): string {
  return execFileSync(
    process.execPath,
    ['--import', 'tsx', new URL(import.meta.url).pathname, `--${mode}`, dir, String(blobs)],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 16 * 1024 * 1024 },
  );
}

async function main(): Promise<void> {
  const [flag, dir, count] = process.argv.slice(2);
  if (flag === '--build') {
    build(dir!, plan(Number(count)));
    return;
  }
  if (flag === '--collect') {
    process.stdout.write(JSON.stringify(await collect(dir!, plan(Number(count)))));
    return;
  }
  const sizes = flag ? [Number(flag)] : SIZES;
  console.log(
    `GC benchmark: FsBlobStore (real files) + SqliteCatalog (file, WAL), node ${process.version}`,
  );
  console.log(
    'blobs    images  garbage  orphans  build s  gc ms  us/blob  rss MiB (before->peak, maxRSS)',
  );
  for (const blobs of sizes) {
    const p = plan(blobs);
    const work = mkdtempSync(join(tmpdir(), 'image-cache-bench-gc-'));
    try {
      const buildStart = performance.now();
      child('build', work, blobs);
      const buildSeconds = (performance.now() - buildStart) / 1000;
      const result = JSON.parse(child('collect', work, blobs)) as {
        elapsedMs: number;
        rssBeforeMiB: number;
        rssPeakMiB: number;
        maxRssMiB: number;
        phases: Record<string, number>;
        report: { deleted: { blobs: number }; kept: { blobs: number }; durationMs: number };
      };
      console.log(
        [
          String(blobs).padEnd(8),
          String(p.images).padStart(6),
          String(p.unreferenced).padStart(8),
          String(p.orphans).padStart(8),
          buildSeconds.toFixed(1).padStart(8),
          String(result.elapsedMs).padStart(6),
          ((result.elapsedMs * 1000) / (blobs + p.orphans)).toFixed(1).padStart(8),
          `  ${result.rssBeforeMiB} -> ${result.rssPeakMiB}, ${result.maxRssMiB}`,
        ].join(' '),
      );
      console.log(
        `         report: deleted ${result.report.deleted.blobs}, kept ${result.report.kept.blobs}, durationMs ${result.report.durationMs}; ${Object.entries(
          result.phases,
        )
          .map(([k, v]) => `${k} ${v}`)
          .join(', ')}`,
      );
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  }
}

await main();
