/**
 * DynamoDB requests per pull and per garbage collection on the AWS backend (requests are what
 * DynamoDB bills, on-demand: a write request unit per 1 KB written, a read unit per 4 KB read).
 *
 *   npm run bench:dynamo                       # GC over 100 and 1000 blobs
 *   npm run bench:dynamo -- --gc-blobs 5000    # other sizes (comma list)
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
import { collectGarbage } from '../lib/gc.ts';
import { parsePullParams } from '../lib/reference.ts';
import {
  awsEmulators,
  freshResourceNames,
  stopAwsEmulators,
} from '../test/support/aws-emulators.ts';
import { generateIndex } from '../test/support/image-factory.ts';
import { pushIndex } from '../test/support/push.ts';
import { startRegistry } from '../test/support/registry-server.ts';
import { log, positiveInt, runMain } from './support.ts';
import { pushSharedBaseImages } from './support-images.ts';

const HOUR = 3_600_000;

function parseOptions(argv: string[]): { gcBlobs: number[] } {
  const { values } = parseArgs({
    args: argv,
    options: { 'gc-blobs': { type: 'string', default: '100,1000' } },
    strict: true,
    allowPositionals: false,
  });
  return { gcBlobs: values['gc-blobs'].split(',').map((n) => positiveInt(n.trim(), '--gc-blobs')) };
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
  } finally {
    await stopAwsEmulators();
    await registry.stop();
    await rm(data, { recursive: true, force: true });
  }
}

runMain('bench:dynamo', main);
