/**
 * Part (b) of bench/serverless-numbers.ts: module init time of each bundled function, measured
 * in a fresh `node` per sample (what Lambda's init phase runs before the first event), and the
 * first invocation where one can run here: the api function with an HTTP API event, the
 * streaming function with the same event, a Writable for its response stream and a context.
 * The worker (its event names a job that must exist) and prune (a whole maintenance pass) are
 * not invoked.
 */
import { availableParallelism, loadavg } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { execFileP, median } from './support.ts';

/** What part (a) found for one function of the synthesized template. */
export interface FunctionBundle {
  /** The construct id, lower-cased: api, streamapi, worker, prune. */
  name: string;
  dir: string;
  mjs: number;
  map: number;
  deflated: number;
}

/** How the first invocation calls the bundle: `handler(event, context)` or the stream handler. */
type InvokeKind = 'http' | 'stream';

const INVOKED: Record<string, { kind: InvokeKind; label: string }> = {
  api: { kind: 'http', label: 'handler(GET /_ping event, context)' },
  streamapi: { kind: 'stream', label: 'streamHandler(GET /_ping event, Writable, context)' },
};

/**
 * Runs in a fresh `node`: imports the bundle and, when asked, invokes it once with a GET /_ping
 * event. Prints the milliseconds of each as JSON. Outside Lambda's runtime the streaming
 * bundle's `handler` is its plain `streamHandler` (no `awslambda` global), which is called
 * directly with a Writable; the answer is checked in the HTTP integration prelude.
 */
const INIT_SCRIPT = `
const t0 = performance.now();
const mod = await import(process.env.BENCH_BUNDLE_URL);
const t1 = performance.now();
let invokeMs;
const kind = process.env.BENCH_INVOKE;
if (kind) {
  const now = Date.now();
  const event = {
    version: '2.0', routeKey: '$default', rawPath: '/_ping', rawQueryString: '',
    headers: { host: 'bench.execute-api.us-east-1.amazonaws.com' },
    requestContext: { accountId: '123456789012', apiId: 'bench', domainName: 'bench', domainPrefix: 'bench',
      http: { method: 'GET', path: '/_ping', protocol: 'HTTP/1.1', sourceIp: '127.0.0.1', userAgent: 'bench' },
      requestId: 'bench', routeKey: '$default', stage: '$default', time: new Date(now).toISOString(), timeEpoch: now },
    isBase64Encoded: false,
  };
  const context = { functionName: 'bench', awsRequestId: 'bench', getRemainingTimeInMillis: () => now + 60000 - Date.now() };
  let status;
  if (kind === 'stream') {
    const { Writable } = await import('node:stream');
    const chunks = [];
    const out = new Writable({ write(chunk, _encoding, done) { chunks.push(Buffer.from(chunk)); done(); } });
    await mod.streamHandler(event, out, context);
    const text = Buffer.concat(chunks).toString('latin1');
    status = JSON.parse(text.slice(0, text.indexOf('\\0'.repeat(8)))).statusCode;
  } else {
    status = (await mod.handler(event, context)).statusCode;
  }
  if (status !== 200) throw new Error('ping answered ' + status);
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
  options: { sourceMaps: boolean; invoke?: { kind: InvokeKind; env: Record<string, string> } },
): Promise<InitSample> {
  const started = performance.now();
  const { stdout } = await execFileP(
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
        ...(options.invoke && { ...options.invoke.env, BENCH_INVOKE: options.invoke.kind }),
      },
    },
  ).catch((error: { stderr?: string; code?: number }) => {
    throw new Error(`init of ${bundle.name} failed (${error.code}): ${error.stderr}`);
  });
  const processMs = performance.now() - started;
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

const loadAverage = () =>
  loadavg()
    .map((n) => n.toFixed(1))
    .join(' ');

/**
 * The lines of part (b). `functionEnv` is the environment of an invoked function (the AWS
 * backend on the emulators); the import alone needs none.
 */
export async function initLines(
  functions: FunctionBundle[],
  runs: number,
  functionEnv: Record<string, string>,
): Promise<string[]> {
  const out = [
    `(b) module init on this machine (node ${process.version}, ${runs} runs each, median; ` +
      `load average ${loadAverage()} on ${availableParallelism()} CPUs at the start)`,
  ];
  for (const f of functions) {
    for (const sourceMaps of [false, true]) {
      const samples: InitSample[] = [];
      // One unmeasured run warms the page cache.
      await initOnce(f, { sourceMaps });
      for (let i = 0; i < runs; i++) samples.push(await initOnce(f, { sourceMaps }));
      const label = `${f.name}${sourceMaps ? ' --enable-source-maps' : ''}`;
      out.push(
        `${label.padEnd(32)} import ${stats(samples.map((s) => s.importMs))}; whole node process ${stats(samples.map((s) => s.processMs))}`,
      );
    }
  }
  for (const f of functions) {
    const invoked = INVOKED[f.name];
    if (!invoked) {
      out.push(
        `${`${f.name} first invocation`.padEnd(32)} not run (${f.name === 'worker' ? 'its event names a job in the table' : 'a whole maintenance pass, see (c)'})`,
      );
      continue;
    }
    const samples: InitSample[] = [];
    for (let i = 0; i < runs; i++) {
      samples.push(
        await initOnce(f, { sourceMaps: true, invoke: { kind: invoked.kind, env: functionEnv } }),
      );
    }
    out.push(
      `${`${f.name} first invocation`.padEnd(32)} ${stats(samples.map((s) => s.invokeMs ?? 0))} after the import, --enable-source-maps (${invoked.label}: builds the AWS composition)`,
    );
  }
  out.push(`load average at the end of (b): ${loadAverage()}`);
  return out;
}
