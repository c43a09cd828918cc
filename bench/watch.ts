/**
 * Watched references (issue 15): what one pass of the watch schedule costs over N watched tags,
 * beside what teams do today, a cron job that pre-pulls every tag through the Engine API.
 *
 *   npm run bench:watch                      # 100 and 1,000 watches on the embedded backend
 *   npm run bench:watch -- --backend aws     # the same, then on DynamoDB Local + fauxqs
 *   npm run bench:watch -- --quick           # 20 and 200 watches
 *
 * Flags:
 *   --sizes LIST          watch counts (default 100,1000: the usual case and ten times it)
 *   --backend B           embedded (default) or aws: as bench:pull, aws runs the AWS backend
 *                         (DynamoDB Local and fauxqs) beside the embedded one (on two shared
 *                         cores: the default under a minute, aws about 4, 7 under heavy load)
 *   --repositories N      repositories the tags are spread over (default 10)
 *   --moved-percent P     share of the tags that move upstream (default 10)
 *   --quick               --sizes 20,200
 *
 * Each case (backend, N) pushes small generated images (one per repository, under N tags in
 * all) to a local docker-registry behind bench/support-counting-proxy.ts, composes a fresh cache
 * in process (as bench:stats and bench:dynamo do) with a clock the bench moves forward by an
 * hour where a step needs every watch due or the tag TTL expired, fills it with the N tags and
 * creates the N watches with PUT /cache/watch through the Engine API router (none of that is
 * timed beyond the PUT's own time), then measures:
 *   list        GET /cache/watch, median of 5
 *   unchanged   one pass (operations.checkWatches(), as serve's tick and the scheduled function
 *               run it) with every watch due and nothing moved: it must HEAD each tag once
 *   moved       a pass with --moved-percent of the tags pushed anew, then until every pull it
 *               started has ended (jobs run in this process; on AWS the worker would run them)
 *               and the new images are verified stored
 *   peer        POST /images/create for every tag, sequentially and 4 at once (the watcher's own
 *               width), with the tag TTL expired; then 4 at once after another move
 * A warm-up case of --repositories watches runs first on each backend and is not reported.
 * DynamoDB requests come from the DynamoCatalog's request counter (every HTTP request, retries
 * included). Times are this machine's and the emulators'; request counts are not.
 */
import { parseArgs } from 'node:util';
import { awsEmulators, stopAwsEmulators } from '../test/support/aws-emulators.ts';
import { startRegistry } from '../test/support/registry-server.ts';
import { cleanupStack, log, machineLines, positiveInt, runMain } from './support.ts';
import { type Backend, type CaseResult, runCase } from './support-watch-case.ts';
import { watchReport } from './support-watch-report.ts';

interface Options {
  sizes: number[];
  backends: Backend[];
  repositories: number;
  movedPercent: number;
}

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      sizes: { type: 'string' },
      backend: { type: 'string', default: 'embedded' },
      repositories: { type: 'string', default: '10' },
      'moved-percent': { type: 'string', default: '10' },
      quick: { type: 'boolean', default: false },
    },
    strict: true,
    allowPositionals: false,
  });
  const backend = values.backend;
  if (backend !== 'embedded' && backend !== 'aws') {
    throw new Error('--backend must be embedded or aws');
  }
  const sizes = (values.sizes ?? (values.quick ? '20,200' : '100,1000'))
    .split(',')
    .map((n) => positiveInt(n.trim(), '--sizes'));
  const repositories = positiveInt(values.repositories, '--repositories');
  const movedPercent = positiveInt(values['moved-percent'], '--moved-percent');
  if (movedPercent > 100) throw new Error('--moved-percent is at most 100');
  for (const size of sizes) {
    if (size % repositories !== 0) {
      throw new Error(`--sizes: ${size} is not a multiple of --repositories ${repositories}`);
    }
  }
  return {
    sizes,
    backends: backend === 'aws' ? ['embedded', 'aws'] : ['embedded'],
    repositories,
    movedPercent,
  };
}

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  const machine = await machineLines();
  const cleanups = cleanupStack();
  const results: CaseResult[] = [];
  const started = performance.now();
  try {
    const registry = await startRegistry();
    cleanups.push(() => registry.stop());
    if (options.backends.includes('aws')) {
      log('starting DynamoDB Local and fauxqs ...');
      cleanups.push(() => stopAwsEmulators());
      // The SDK's standard settings (AWS_ENDPOINT_URL_*), read by composeAws's clients.
      Object.assign(process.env, (await awsEmulators()).env);
    }
    for (const backend of options.backends) {
      // A first small case, not reported: the emulator's and the JIT's warm-up would otherwise
      // land on the usual case alone and flatter the growth to the ten-times case.
      log(`${backend}: warm-up case of ${options.repositories} watches (not reported) ...`);
      await runCase({
        backend,
        watches: options.repositories,
        repositories: options.repositories,
        movedPercent: 100,
        registry,
        prefix: 'warm-up',
      });
      for (const watches of options.sizes) {
        results.push(
          await runCase({
            backend,
            watches,
            repositories: options.repositories,
            movedPercent: options.movedPercent,
            registry,
          }),
        );
      }
    }
  } finally {
    await cleanups.run();
  }
  const total = (performance.now() - started) / 1000;
  process.stdout.write(`${watchReport(results, machine, total).join('\n')}\n`);
}

runMain('bench:watch', main);
