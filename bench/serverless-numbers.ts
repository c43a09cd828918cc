/**
 * Numbers of the AWS (serverless) shape:
 *
 *   npm run bench:serverless                          # synth, init times, requests
 *   npm run bench:serverless -- --runs 15             # more init-time samples
 *   npm run bench:serverless -- --cdk-out /tmp/out    # reuse a synth output (`cdk synth -o`)
 *
 *   (a) bundle size per function: `npx cdk synth -q` into a temp folder (the stack's own
 *       esbuild bundling: ESM, minified, external source map, the AWS SDK bundled), then the
 *       sizes of each function's asset (index.mjs, its map, and the deflated size, about what
 *       the deployment zip weighs).
 *   (b) module init time: `node` spawned on each bundled index.mjs, timing the dynamic import
 *       of the module (what Lambda's init phase runs before the first event), median of --runs,
 *       with and without --enable-source-maps (the stack sets NODE_OPTIONS to it). For the api
 *       function also the first invocation (GET /_ping), which builds the AWS composition.
 *   (c) DynamoDB and S3 requests per docker command: functions/api.ts behind the local API
 *       Gateway (test/support/api-gateway-local.ts) with the AWS backend on DynamoDB Local and
 *       fauxqs, a docker-registry as docker.io, and the real docker CLI; the catalog's request
 *       counter (lib/adapters/dynamo/request-counter.ts) and an equivalent middleware on the
 *       S3 client (this file) count every HTTP request the SDK sends, retries included. The
 *       CLI sends an admin token (HttpHeaders), so each call includes the token check (a
 *       GetItem; an UpdateItem for last-used at most once a minute). Plus runs of the
 *       scheduled prune function (functions/prune.ts).
 * Request counts do not depend on the machine; times do (this machine runs Node
 * ${process.version} on its own CPU, Lambda runs Node 24 on arm64 Graviton).
 */
import { spawn } from 'node:child_process';
import { readFile, rm, stat } from 'node:fs/promises';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { deflateRawSync } from 'node:zlib';
import { CreateBucketCommand, type S3Client } from '@aws-sdk/client-s3';
import type { DynamoCatalog } from '../lib/adapters/dynamo-catalog.ts';
import type { S3BlobStore } from '../lib/adapters/s3-blob-store.ts';
import { createToken } from '../lib/auth/tokens.ts';
import { lambdaRuntime } from '../lib/lambda/runtime.ts';
import { type HttpApiHandler, startApiGatewayLocal } from '../test/support/api-gateway-local.ts';
import {
  type AwsEmulators,
  awsEmulators,
  freshResourceNames,
  openAwsAdapters,
  stopAwsEmulators,
} from '../test/support/aws-emulators.ts';
import { docker } from '../test/support/docker-cli.ts';
import { startRegistry } from '../test/support/registry-server.ts';
import { tempDir } from '../test/support/tmp.ts';
import { execFileP, log, median, positiveInt, ROOT } from './support.ts';
import { pushSharedBaseImages } from './support-images.ts';

interface FunctionBundle {
  name: string;
  dir: string;
  mjs: number;
  map: number;
  deflated: number;
}

function parseOptions(argv: string[]): { runs: number; cdkOut?: string } {
  const { values } = parseArgs({
    args: argv,
    options: {
      runs: { type: 'string', default: '9' },
      'cdk-out': { type: 'string' },
    },
    strict: true,
    allowPositionals: false,
  });
  return {
    runs: positiveInt(values.runs, '--runs'),
    ...(values['cdk-out'] && { cdkOut: values['cdk-out'] }),
  };
}

const kib = (bytes: number) => `${(bytes / 1024).toFixed(0)} KiB`;

// ---------------------------------------------------------------------------------------------
// (a) bundles

async function synth(outDir: string): Promise<void> {
  log(`npx cdk synth -q -o ${outDir} ...`);
  const started = performance.now();
  await execFileP('npx', ['cdk', 'synth', '-q', '--no-notices', '-o', outDir], {
    cwd: ROOT,
    maxBuffer: 16 * 1024 * 1024,
  });
  log(`synth done in ${((performance.now() - started) / 1000).toFixed(1)} s`);
}

/** Every Lambda function of the synthesized template with its bundled asset folder. */
async function bundles(cdkOut: string): Promise<FunctionBundle[]> {
  const manifest = JSON.parse(await readFile(join(cdkOut, 'manifest.json'), 'utf8')) as {
    artifacts: Record<string, { type: string; properties?: { templateFile?: string } }>;
  };
  const found: FunctionBundle[] = [];
  for (const artifact of Object.values(manifest.artifacts)) {
    const templateFile = artifact.properties?.templateFile;
    if (artifact.type !== 'aws:cloudformation:stack' || !templateFile) continue;
    const template = JSON.parse(await readFile(join(cdkOut, templateFile), 'utf8')) as {
      Resources: Record<string, { Type: string; Metadata?: Record<string, unknown> }>;
    };
    for (const resource of Object.values(template.Resources)) {
      const assetPath = resource.Metadata?.['aws:asset:path'];
      const cdkPath = resource.Metadata?.['aws:cdk:path'];
      if (resource.Type !== 'AWS::Lambda::Function' || typeof assetPath !== 'string') continue;
      const name = String(cdkPath).split('/').at(-2)?.toLowerCase() ?? assetPath;
      const dir = join(cdkOut, assetPath);
      const code = await readFile(join(dir, 'index.mjs'));
      const map = await stat(join(dir, 'index.mjs.map')).catch(() => undefined);
      found.push({
        name,
        dir,
        mjs: code.length,
        map: map?.size ?? 0,
        deflated: deflateRawSync(code, { level: 9 }).length,
      });
    }
  }
  if (found.length === 0) throw new Error(`no bundled Lambda functions in ${cdkOut}`);
  return found.sort((a, b) => a.name.localeCompare(b.name));
}

// ---------------------------------------------------------------------------------------------
// (b) init time

/**
 * Runs in a fresh `node`: imports the bundle and, when asked, invokes the handler once with a
 * GET /_ping event. Prints the milliseconds of each as JSON.
 */
const INIT_SCRIPT = `
const t0 = performance.now();
const mod = await import(process.env.BENCH_BUNDLE_URL);
const t1 = performance.now();
let invokeMs;
if (process.env.BENCH_INVOKE_PING) {
  const now = Date.now();
  const result = await mod.handler({
    version: '2.0', routeKey: '$default', rawPath: '/_ping', rawQueryString: '',
    headers: { host: 'bench.execute-api.us-east-1.amazonaws.com' },
    requestContext: { accountId: '123456789012', apiId: 'bench', domainName: 'bench', domainPrefix: 'bench',
      http: { method: 'GET', path: '/_ping', protocol: 'HTTP/1.1', sourceIp: '127.0.0.1', userAgent: 'bench' },
      requestId: 'bench', routeKey: '$default', stage: '$default', time: new Date(now).toISOString(), timeEpoch: now },
    isBase64Encoded: false,
  });
  if (result.statusCode !== 200) throw new Error('ping answered ' + result.statusCode + ' ' + result.body);
  invokeMs = performance.now() - t1;
}
process.stdout.write(JSON.stringify({ importMs: t1 - t0, invokeMs }) + '\\n');
process.exit(0);
`;

interface InitSample {
  importMs: number;
  invokeMs?: number;
  processMs: number;
}

async function initOnce(
  bundle: FunctionBundle,
  options: { sourceMaps: boolean; invokeEnv?: Record<string, string> },
): Promise<InitSample> {
  const started = performance.now();
  const child = spawn(
    process.execPath,
    [
      ...(options.sourceMaps ? ['--enable-source-maps'] : []),
      '--input-type=module',
      '-e',
      INIT_SCRIPT,
    ],
    {
      cwd: bundle.dir,
      env: {
        PATH: process.env.PATH,
        BENCH_BUNDLE_URL: pathToFileURL(join(bundle.dir, 'index.mjs')).href,
        ...(options.invokeEnv && { ...options.invokeEnv, BENCH_INVOKE_PING: '1' }),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => {
    stdout += chunk.toString();
  });
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', resolve);
  });
  const processMs = performance.now() - started;
  if (code !== 0) throw new Error(`init of ${bundle.name} failed (${code}): ${stderr}`);
  const parsed = JSON.parse(stdout.trim().split('\n').at(-1)!) as {
    importMs: number;
    invokeMs?: number;
  };
  return { ...parsed, processMs };
}

function stats(values: number[]): string {
  const sorted = [...values].sort((a, b) => a - b);
  return `${median(values).toFixed(0)} ms (min ${sorted[0]!.toFixed(0)}, max ${sorted.at(-1)!.toFixed(0)})`;
}

// ---------------------------------------------------------------------------------------------
// (c) requests

/** The S3 twin of the catalog's RequestCounter: a middleware after the retry step. */
class S3RequestCounter {
  readonly #counts = new Map<string, number>();

  static attach(client: S3Client): S3RequestCounter {
    const counter = new S3RequestCounter();
    client.middlewareStack.add(
      (next, context) => async (args) => {
        const operation = (context.commandName ?? 'Unknown').replace(/Command$/, '');
        counter.#counts.set(operation, (counter.#counts.get(operation) ?? 0) + 1);
        return next(args);
      },
      { step: 'deserialize', name: 'benchS3RequestCounter', override: true },
    );
    return counter;
  }

  get total(): number {
    return [...this.#counts.values()].reduce((a, b) => a + b, 0);
  }

  byOperation(): Record<string, number> {
    return Object.fromEntries([...this.#counts].sort(([a], [b]) => a.localeCompare(b)));
  }

  reset(): void {
    this.#counts.clear();
  }
}

function detail(ops: Record<string, number>): string {
  const parts = Object.entries(ops).map(([op, n]) => `${op} ${n}`);
  return parts.length > 0 ? parts.join(', ') : '-';
}

async function requestNumbers(
  emulators: AwsEmulators,
  names: { bucket: string; table: string },
  token: string,
): Promise<string[]> {
  const registry = await startRegistry();
  const work = await tempDir('bench-serverless');
  try {
    log('pushing images to docker-registry ...');
    const { base, app, other } = await pushSharedBaseImages(registry, 'sls-bench');

    // The function's environment, as the stack sets it, before its first invocation.
    Object.assign(process.env, emulators.env, {
      IMAGE_CACHE_BACKEND: 'aws',
      IMAGE_CACHE_BUCKET: names.bucket,
      IMAGE_CACHE_TABLE: names.table,
      IMAGE_CACHE_REGISTRIES: `docker.io=${registry.url}`,
    });
    const { handler } = (await import('../functions/api.ts')) as { handler: HttpApiHandler };
    const prune = await import('../functions/prune.ts');
    const gateway = await startApiGatewayLocal({ handler });
    try {
      if ((await fetch(`${gateway.url}/_ping`)).status !== 200) throw new Error('no ping');
      const { composition } = await lambdaRuntime();
      const catalog = composition.context.catalog as DynamoCatalog;
      const s3 = S3RequestCounter.attach((composition.context.blobs as S3BlobStore).client);

      const lines = [
        `${'step'.padEnd(52)} ${'DynamoDB'.padStart(8)} ${'S3'.padStart(4)}  API calls; DynamoDB | S3 by operation`,
      ];
      const measure = async (step: string, run: () => Promise<void>) => {
        catalog.requests.reset();
        s3.reset();
        const before = gateway.invocations.length;
        await run();
        const calls = gateway.invocations
          .slice(before)
          .map((i) => `${i.method} ${i.rawPath.replace(/^\/v[\d.]+/, '')} ${i.status}`);
        lines.push(
          `${step.padEnd(52)} ${String(catalog.requests.total).padStart(8)} ${String(s3.total).padStart(4)}  ` +
            `${calls.join(', ') || '(scheduled)'}; ${detail(catalog.requests.byOperation())} | ${detail(s3.byOperation())}`,
        );
        log(`${step}: ${catalog.requests.total} DynamoDB, ${s3.total} S3`);
      };
      const cli = async (args: string[]) => {
        const result = await docker(gateway.hostPort, args, 120_000, {
          headers: { Authorization: `Bearer ${token}` },
        });
        if (result.code !== 0) throw new Error(`docker ${args.join(' ')}: ${result.stderr}`);
      };

      await measure(`docker pull app:1, cold (${app.blobs.length} blobs)`, () =>
        cli(['pull', 'app:1']),
      );
      await measure('docker pull app:1 again (tag fresh)', () => cli(['pull', 'app:1']));
      await measure(
        `docker pull other:1 (${other.blobs.length} blobs, ${base.layers.length} cached)`,
        () => cli(['pull', 'other:1']),
      );
      await measure('docker image ls', () => cli(['image', 'ls']));
      await measure('docker image inspect app:1', () => cli(['image', 'inspect', 'app:1']));
      await measure(`docker save -o app.tar app:1 (${app.layers.length} layers)`, () =>
        cli(['save', '-o', join(work.path, 'app.tar'), 'app:1']),
      );
      await measure('docker save -o both.tar app:1 other:1', () =>
        cli(['save', '-o', join(work.path, 'both.tar'), 'app:1', 'other:1']),
      );
      // The function logs its report (to CloudWatch on AWS): keep it off this report's stdout.
      const runPrune = async () => {
        const consoleLog = console.log;
        console.log = (...args: unknown[]) => log(`prune: ${args.map(String).join(' ')}`);
        try {
          await prune.handler();
        } finally {
          console.log = consoleLog;
        }
      };
      await measure('scheduled prune (functions/prune.ts), nothing due', runPrune);
      const blobCount = new Set([...app.blobs, ...other.blobs].map((b) => b.digest)).size;
      await measure(`docker image prune -a -f (2 images, ${blobCount} blobs)`, () =>
        cli(['image', 'prune', '-a', '-f']),
      );
      await measure('scheduled prune (functions/prune.ts), empty cache', runPrune);
      return lines;
    } finally {
      await gateway.close();
      await (await lambdaRuntime()).composition.close();
    }
  } finally {
    await registry.stop();
    await work.cleanup();
  }
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  const synthDir = options.cdkOut ?? join(tmpdir(), `image-cache-bench-cdk-${process.pid}`);
  const out: string[] = [];
  let emulators: AwsEmulators | undefined;
  try {
    if (!options.cdkOut) await synth(synthDir);
    const functions = await bundles(synthDir);

    out.push('(a) bundle per function (cdk synth: esbuild, ESM, minified, AWS SDK bundled)');
    out.push(
      `${'function'.padEnd(10)} ${'index.mjs'.padStart(10)} ${'deflated'.padStart(10)} ${'.map'.padStart(10)}`,
    );
    for (const f of functions) {
      out.push(
        `${f.name.padEnd(10)} ${kib(f.mjs).padStart(10)} ${kib(f.deflated).padStart(10)} ${kib(f.map).padStart(10)}`,
      );
    }

    log('starting DynamoDB Local and fauxqs ...');
    emulators = await awsEmulators();
    const names = freshResourceNames();
    const adapters = openAwsAdapters(emulators, names);
    let token: string;
    try {
      await adapters.catalog.createTable();
      await adapters.blobs.client.send(new CreateBucketCommand({ Bucket: names.bucket }));
      // The function always requires tokens; admin covers pull, save and prune.
      token = (await createToken(adapters.catalog, { scope: 'admin' }, Date.now())).token;
    } finally {
      adapters.close();
    }
    const functionEnv = {
      ...emulators.env,
      IMAGE_CACHE_BACKEND: 'aws',
      IMAGE_CACHE_BUCKET: names.bucket,
      IMAGE_CACHE_TABLE: names.table,
    };

    out.push('');
    out.push(
      `(b) module init on this machine (node ${process.version}, ${options.runs} runs each, median; ` +
        `load average ${loadavg()
          .map((n) => n.toFixed(1))
          .join(' ')} on ${availableParallelism()} CPUs)`,
    );
    for (const f of functions) {
      for (const sourceMaps of [false, true]) {
        const samples: InitSample[] = [];
        // One unmeasured run warms the page cache.
        await initOnce(f, { sourceMaps });
        for (let i = 0; i < options.runs; i++) samples.push(await initOnce(f, { sourceMaps }));
        const label = `${f.name}${sourceMaps ? ' --enable-source-maps' : ''}`;
        out.push(
          `${label.padEnd(32)} import ${stats(samples.map((s) => s.importMs))}; whole node process ${stats(samples.map((s) => s.processMs))}`,
        );
      }
    }
    const api = functions.find((f) => f.name === 'api');
    if (api) {
      const samples: InitSample[] = [];
      for (let i = 0; i < options.runs; i++) {
        samples.push(await initOnce(api, { sourceMaps: true, invokeEnv: functionEnv }));
      }
      out.push(
        `${'api first invocation (GET /_ping)'.padEnd(32)} ${stats(samples.map((s) => s.invokeMs ?? 0))} after the import (builds the AWS composition)`,
      );
    }

    out.push('');
    out.push(
      '(c) requests per docker command, api function behind the local API Gateway, AWS backend on DynamoDB Local + fauxqs',
    );
    out.push(...(await requestNumbers(emulators, names, token)));
  } finally {
    await stopAwsEmulators();
    if (!options.cdkOut) await rm(synthDir, { recursive: true, force: true });
  }
  process.stdout.write(`${out.join('\n')}\n`);
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
