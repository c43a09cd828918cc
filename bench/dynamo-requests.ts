/**
 * DynamoDB requests per pull and per garbage collection on the AWS backend (requests are what
 * DynamoDB bills, on-demand: a write request unit per 1 KB written, a read unit per 4 KB read).
 *
 *   npm run bench:dynamo                       # GC over 100 and 1000 blobs; commands at 20, 5000 images
 *   npm run bench:dynamo -- --gc-blobs 5000    # other sizes (comma list)
 *   npm run bench:dynamo -- --catalog-images 20,20000
 *
 * Composes the AWS backend in process (lib/composition.ts composeAws, exactly what
 * `serve --backend aws --create-resources` builds) against DynamoDB Local and fauxqs on
 * 127.0.0.1, and reads the DynamoCatalog's request counter (SDK middleware after the retry
 * step: every HTTP request counts, retries included) around each step:
 *   pulls    from a local docker-registry (Debian `docker-registry`) as docker.io: a cold pull
 *            of a 5-layer image, the same tag again (fresh within --tag-ttl, answered from the
 *            catalog), again after the tag TTL (re-checked upstream, nothing new), a second
 *            image sharing 3 of the layers, and a multi-arch index (one platform).
 *   gc       N unreferenced blob records (and their S3 objects), all older than the grace
 *            period; one collection deletes them all; a second finds nothing to do.
 *   commands on a fresh table holding 20, then 5,000 images (issue 13: no Scan on a request
 *            path): requests and consumed capacity (ReturnConsumedCapacity TOTAL on every
 *            command) of `image ls`, inspect, history, tag, save, rmi by ID (noprune) and rmi by
 *            ID with the collection of its freed blobs, each through the Engine API router.
 *            The bulk images are catalog records written through the port (commitImage, tag and
 *            digest ref each), not pulls; the images the commands touch are real (blobs in S3).
 * Request counts do not depend on the machine; times do, and the emulators are not AWS.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { parseArgs } from 'node:util';
import { DynamoCatalog } from '../lib/adapters/dynamo-catalog.ts';
import { composeAws } from '../lib/composition.ts';
import { parseServeArgs } from '../lib/config.ts';
import { sha256 } from '../lib/digest.ts';
import { createRouter } from '../lib/engine/router.ts';
import { collectGarbage } from '../lib/gc.ts';
import { MediaType } from '../lib/media-types.ts';
import { parsePullParams } from '../lib/reference.ts';
import {
  awsEmulators,
  composeOnEmulators,
  freshResourceNames,
  stopAwsEmulators,
} from '../test/support/aws-emulators.ts';
import { bodyBytes } from '../test/support/aws-save-backend.ts';
import { generateIndex } from '../test/support/image-factory.ts';
import { pushIndex } from '../test/support/push.ts';
import { startRegistry } from '../test/support/registry-server.ts';
import { type SeededImage, seedImage } from '../test/support/seed-images.ts';
import { log, positiveInt, runMain } from './support.ts';
import { pushSharedBaseImages } from './support-images.ts';

const HOUR = 3_600_000;

function parseOptions(argv: string[]): { gcBlobs: number[]; catalogImages: number[] } {
  const { values } = parseArgs({
    args: argv,
    options: {
      'gc-blobs': { type: 'string', default: '100,1000' },
      'catalog-images': { type: 'string', default: '20,5000' },
    },
    strict: true,
    allowPositionals: false,
  });
  const list = (text: string, flag: string) =>
    text.split(',').map((n) => positiveInt(n.trim(), flag));
  return {
    gcBlobs: list(values['gc-blobs'], '--gc-blobs'),
    catalogImages: list(values['catalog-images'], '--catalog-images'),
  };
}

function row(step: string, total: number, ops: Record<string, number>, per?: string): string {
  const detail = Object.entries(ops)
    .map(([op, n]) => `${op} ${n}`)
    .join(', ');
  return `${step.padEnd(46)} ${String(total).padStart(6)}${per ? `  (${per})` : ''}  ${detail}`;
}

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  const data = await mkdtemp(join(tmpdir(), 'bench-dynamo-'));
  const registry = await startRegistry();
  try {
    log('starting DynamoDB Local and fauxqs ...');
    const emulators = await awsEmulators();
    Object.assign(process.env, emulators.env);

    log('pushing images to docker-registry ...');
    const { base, app, other } = await pushSharedBaseImages(registry, 'dyn');
    const multi = await generateIndex({
      seed: 'dyn-multi',
      format: 'oci',
      platforms: ['linux/amd64', 'linux/arm64/v8'],
      layers: 2,
    });
    await pushIndex({ url: registry.url, repository: 'library/multi' }, multi, { tags: ['1'] });

    const names = freshResourceNames();
    const config = parseServeArgs(
      ['--backend', 'aws', '--create-resources', '--data', data, '--tag-ttl', '2s'],
      {
        IMAGE_CACHE_BUCKET: names.bucket,
        IMAGE_CACHE_TABLE: names.table,
        IMAGE_CACHE_REGISTRIES: `docker.io=${registry.url}`,
      },
    );
    const composition = await composeAws(config);
    const { context } = composition;
    const { catalog } = context;
    if (!(catalog instanceof DynamoCatalog)) throw new Error('composeAws built no DynamoCatalog');
    const lines: string[] = [];
    const measure = async (
      step: string,
      run: () => Promise<unknown>,
      per?: (n: number) => string,
    ) => {
      catalog.requests.reset();
      const started = performance.now();
      await run();
      const ms = performance.now() - started;
      const total = catalog.requests.total;
      lines.push(
        row(
          step,
          total,
          catalog.requests.byOperation(),
          [per?.(total), `${ms.toFixed(0)} ms`].filter(Boolean).join(', '),
        ),
      );
      log(`${step}: ${total} requests`);
    };
    try {
      const pull = (name: string) => () => context.pulls.pull(parsePullParams(name));
      const perBlob = (blobs: number) => (n: number) => `${(n / blobs).toFixed(2)}/blob`;
      await measure(
        `cold pull app:1 (${app.blobs.length} blobs)`,
        pull('app:1'),
        perBlob(app.blobs.length),
      );
      await measure('pull app:1 again, tag fresh (TTL 2 s)', pull('app:1'));
      await new Promise((r) => setTimeout(r, 2100));
      await measure('pull app:1 after the TTL, nothing new', pull('app:1'));
      await measure(
        `pull other:1 (${other.blobs.length} blobs, ${base.layers.length} shared)`,
        pull('other:1'),
        perBlob(other.blobs.length),
      );
      const amd64 = multi.images.find((i) => i.platform.architecture === 'amd64')!;
      await measure(
        `cold pull multi:1, index + amd64 (${amd64.blobs.length} blobs)`,
        pull('multi:1'),
        perBlob(amd64.blobs.length),
      );

      for (const count of options.gcBlobs) {
        log(`writing ${count} unreferenced blobs ...`);
        const old = Date.now() - 2 * HOUR;
        const queue = Array.from({ length: count }, (_, i) => i);
        await Promise.all(
          Array.from({ length: 16 }, async () => {
            for (let i = queue.shift(); i !== undefined; i = queue.shift()) {
              const bytes = Buffer.from(`garbage ${names.table} ${count} ${i}`);
              const stored = await context.blobs.write(Readable.from([bytes]));
              await catalog.addBlob(stored, old);
            }
          }),
        );
        const gc = () =>
          collectGarbage(
            {
              catalog,
              gcReports: catalog,
              blobs: context.blobs,
              clock: context.clock,
              gcClaims: context.gcClaims,
            },
            { graceMs: HOUR },
          );
        let deleted = 0;
        await measure(
          `gc: ${count} garbage blobs (+ the pulled, kept)`,
          async () => {
            deleted = (await gc()).deleted.blobs;
          },
          (n) => `${(n / count).toFixed(2)}/deleted blob`,
        );
        if (deleted !== count) throw new Error(`gc deleted ${deleted} blobs, expected ${count}`);
        await measure('gc again: nothing to delete', gc);
      }
    } finally {
      await composition.close();
    }
    const out = [
      '',
      '== DynamoDB requests (AWS backend on DynamoDB Local + fauxqs) ==',
      `${'step'.padEnd(46)} ${'reqs'.padStart(6)}  (per unit, time)  by operation`,
      ...lines,
      '',
    ];
    process.stdout.write(`${out.join('\n')}\n`);
    process.stdout.write(`${(await commandTable(options.catalogImages)).join('\n')}\n`);
  } finally {
    await stopAwsEmulators();
    await registry.stop();
    await rm(data, { recursive: true, force: true });
  }
}

const COMMANDS = [
  'image ls',
  'inspect',
  'history',
  'tag',
  'save',
  'rmi by ID (noprune)',
  'rmi by ID (+ GC of freed blobs)',
] as const;
type Command = (typeof COMMANDS)[number];
type Cost = { requests: number; capacity: number; scans: number };

/**
 * Requests and capacity per Engine API command on one fresh table, at each image count in turn
 * (the table grows between them). Printed side by side: flat means independent of the table.
 */
async function commandTable(sizes: number[]): Promise<string[]> {
  const { composition } = await composeOnEmulators();
  const { context } = composition;
  const catalog = context.catalog as DynamoCatalog;
  const router = createRouter(context);
  const costs = new Map<number, Map<Command, Cost>>();
  /** Images in the table, and catalog records written so far (their index names them). */
  let present = 0;
  let records = 0;
  try {
    for (const size of [...sizes].sort((a, b) => a - b)) {
      // Two real images the commands use (rmi deletes them), the rest catalog records.
      const probes: SeededImage[] = [];
      for (const name of [`probe-${size}-a`, `probe-${size}-b`]) {
        probes.push(
          await seedImage(context, {
            name,
            layers: [[`${name}-layer`, 4_096]],
            tags: [[`docker.io/library/${name}`, 'latest']],
            digestRef: `docker.io/library/${name}`,
            now: Date.now(),
          }),
        );
      }
      present += 2;
      log(`seeding catalog records up to ${size} images ...`);
      const more = Math.max(0, size - present);
      await seedRecords(catalog, records, records + more);
      records += more;
      present += more;
      const [a, b] = probes as [SeededImage, SeededImage];
      const name = `probe-${size}-a:latest`;
      const calls: Record<Command, [string, string, Record<string, string>]> = {
        'image ls': ['GET', '/images/json', {}],
        inspect: ['GET', `/images/${name}/json`, {}],
        history: ['GET', `/images/${name}/history`, {}],
        tag: ['POST', `/images/${name}/tag`, { repo: `probe-${size}-a`, tag: 'copy' }],
        save: ['GET', '/images/get', { names: name }],
        'rmi by ID (noprune)': ['DELETE', `/images/${a.id}`, { noprune: '1', force: '1' }],
        'rmi by ID (+ GC of freed blobs)': ['DELETE', `/images/${b.id}`, {}],
      };
      const row = new Map<Command, Cost>();
      catalog.requests.measureCapacity();
      for (const command of COMMANDS) {
        const [method, path, query] = calls[command];
        catalog.requests.reset();
        const response = await router({
          method,
          path,
          query: new URLSearchParams(query),
          headers: {},
        });
        await bodyBytes(response);
        if (response.status >= 300) throw new Error(`${command} answered ${response.status}`);
        row.set(command, {
          requests: catalog.requests.total,
          capacity: catalog.requests.capacity,
          scans: catalog.requests.byOperation().Scan ?? 0,
        });
      }
      present -= 2; // both probes were removed
      costs.set(size, row);
      log(`commands measured at ${size} images`);
    }
  } finally {
    await composition.close();
  }
  const sorted = [...costs.keys()];
  const cell = (c: Cost) =>
    `${c.requests} / ${Math.round(c.capacity).toLocaleString('en-US')}${c.scans ? ` (${c.scans} Scan)` : ''}`;
  return [
    '',
    '== DynamoDB per command: requests / capacity units consumed (ReturnConsumedCapacity TOTAL) ==',
    `${'command'.padEnd(34)}${sorted.map((n) => `${n.toLocaleString('en-US')} images`.padStart(22)).join('')}`,
    ...COMMANDS.map(
      (command) =>
        `${command.padEnd(34)}${sorted.map((n) => cell(costs.get(n)!.get(command)!).padStart(22)).join('')}`,
    ),
    '',
  ];
}

/** Catalog records for images `from`..`to`-1: a config record, one shared layer, a tag, a ref. */
async function seedRecords(catalog: DynamoCatalog, from: number, to: number): Promise<void> {
  const now = Date.now();
  const layer = sha256('bench shared layer');
  await catalog.addBlob({ digest: layer, size: 1_000 }, now);
  const queue = Array.from({ length: Math.max(0, to - from) }, (_, i) => from + i);
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      for (let i = queue.shift(); i !== undefined; i = queue.shift()) {
        const config = sha256(`bench config ${i}`);
        await catalog.addBlob({ digest: config, size: 500 }, now);
        const raw = Buffer.from(JSON.stringify({ schemaVersion: 2, config, layers: [layer], i }));
        const digest = sha256(raw);
        const repository = `docker.io/bench/image-${i % 100}`;
        await catalog.commitImage({
          manifests: [
            {
              digest,
              mediaType: MediaType.dockerManifest,
              raw,
              blobs: [config, layer],
              children: [],
              image: {
                configDigest: config,
                created: '2024-01-01T00:00:00Z',
                os: 'linux',
                architecture: 'amd64',
                size: 1_000,
                labels: {},
              },
              createdAt: now,
              lastUsedAt: now,
            },
          ],
          blobs: [config, layer],
          tag: { repository, tag: `v${i}`, manifest: digest, source: digest },
          digestRef: { repository, digest, manifest: digest },
          now,
        });
      }
    }),
  );
}

runMain('bench:dynamo', main);
