/**
 * Numbers of the AWS (serverless) shape:
 *
 *   npm run bench:serverless                          # synth, init times, requests
 *   npm run bench:serverless -- --runs 15             # more init-time samples
 *   npm run bench:serverless -- --cdk-out /tmp/out    # reuse a synth output (`cdk synth -o`)
 *
 *   (a) bundle size per function (api, streamapi, worker, prune: every Lambda function of the
 *       synthesized template): `npx cdk synth -q` into a temp folder (the stack's own esbuild
 *       bundling: ESM, minified, external source map, the AWS SDK bundled), then the sizes of
 *       each function's asset (index.mjs, its map, and the deflated size, about what the
 *       deployment zip weighs).
 *   (b) module init time (bench/serverless-init.ts): `node` spawned on each bundled index.mjs,
 *       timing the dynamic import of the module (what Lambda's init phase runs before the first
 *       event), median of --runs, with and without --enable-source-maps (the stack sets
 *       NODE_OPTIONS to it); the first invocation of the api and streaming functions (GET
 *       /_ping), which builds the AWS composition.
 *   (c) DynamoDB and S3 requests per docker command (bench/serverless-requests.ts): the four
 *       functions in containers of their own in this process, behind the local API Gateway,
 *       function URL and Invoke API, with the AWS backend on DynamoDB Local and fauxqs, a
 *       docker-registry as docker.io, and the real docker CLI; middleware on each SDK client
 *       counts every HTTP request, retries included, per function. The CLI sends an admin
 *       token (HttpHeaders), so each call includes the token check (a GetItem; an UpdateItem
 *       for last-used at most once a minute).
 * Request counts do not depend on the machine (the job's progress writes and follower polls
 * do on timing); times do (this machine runs Node ${process.version} on its own CPU, Lambda
 * runs Node 24 on arm64 Graviton).
 */
import { readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { deflateRawSync } from 'node:zlib';
import {
  type AwsEmulators,
  awsEmulators,
  stopAwsEmulators,
} from '../test/support/aws-emulators.ts';
import { type FunctionBundle, initLines } from './serverless-init.ts';
import { requestNumbers } from './serverless-requests.ts';
import { execFileP, log, positiveInt, ROOT } from './support.ts';
import { freshStackResources } from './support-serverless-shape.ts';

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

/** The stack's functions by construct id, lower-cased (infra/image-cache-stack.ts). */
const FUNCTIONS = ['api', 'streamapi', 'worker', 'prune'];

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
  const missing = FUNCTIONS.filter((name) => !found.some((f) => f.name === name));
  if (missing.length > 0) {
    throw new Error(
      `no bundled ${missing.join(', ')} function in ${cdkOut} (found: ${found.map((f) => f.name).join(', ') || 'none'})`,
    );
  }
  return found.sort((a, b) => a.name.localeCompare(b.name));
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
    const { names, token } = await freshStackResources(emulators);
    const functionEnv = {
      ...emulators.env,
      IMAGE_CACHE_BACKEND: 'aws',
      IMAGE_CACHE_BUCKET: names.bucket,
      IMAGE_CACHE_TABLE: names.table,
    };

    out.push('');
    out.push(...(await initLines(functions, options.runs, functionEnv)));
    out.push('');
    out.push(
      '(c) requests per docker command, AWS backend on DynamoDB Local + fauxqs; "jobs": the requests of createOrJoinJob, claimJob, recordJobProgress, finishJob and getJob',
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
