/**
 * Part (c) of bench/serverless-numbers.ts: DynamoDB and S3 requests per docker command in the
 * deployed shape. Four Lambda containers in this process (bench/support-lambda-containers.ts),
 * each with the environment the stack gives its function: the api function behind the local
 * API Gateway, the streaming function behind the local function URL, the worker behind the
 * local Invoke API (test/support/lambda-local.ts) that the api and streaming functions
 * dispatch jobs to, and the scheduled prune function. Behind a front door with a deadline every
 * pull is a job: the api creates it (or joins it), invokes the worker and polls the job record
 * until it ends; the worker claims it, pulls, writes progress and finishes it. The last step
 * is a pull through an API Gateway whose function timeout leaves no time to follow the job: the
 * request answers with the handover line at once and the worker finishes alone.
 */
import { join } from 'node:path';
import { startApiGatewayLocal } from '../test/support/api-gateway-local.ts';
import type { AwsEmulators } from '../test/support/aws-emulators.ts';
import { type DockerResult, docker } from '../test/support/docker-cli.ts';
import { startRegistry } from '../test/support/registry-server.ts';
import { tempDir } from '../test/support/tmp.ts';
import { log } from './support.ts';
import { pushSharedBaseImages } from './support-images.ts';
import type { LambdaContainer } from './support-lambda-containers.ts';
import { startServerlessShape, WORKER_FUNCTION } from './support-serverless-shape.ts';

/** The Catalog methods that are the job's own cost rather than the pull's. */
const JOB_METHODS = ['createOrJoinJob', 'claimJob', 'recordJobProgress', 'finishJob', 'getJob'];
/** An api function timeout at which the deadline leaves no time to follow the job (4 s + 2 s margins). */
const HANDOVER_FUNCTION_TIMEOUT_MS = 6_000;

function detail(counts: Record<string, number>): string {
  const parts = Object.entries(counts).map(([key, n]) => `${key} ${n}`);
  return parts.length > 0 ? parts.join(', ') : '-';
}

function jobRequests(container: LambdaContainer<unknown>): number {
  const byMethod = container.dynamoByMethod.byKey();
  return JOB_METHODS.reduce((sum, method) => sum + (byMethod[method] ?? 0), 0);
}

export async function requestNumbers(
  emulators: AwsEmulators,
  names: { bucket: string; table: string },
  token: string,
): Promise<string[]> {
  const registry = await startRegistry();
  const work = await tempDir('bench-serverless');
  const closing: Array<() => Promise<void>> = [];
  try {
    log('pushing images to docker-registry ...');
    const { base, app, other } = await pushSharedBaseImages(registry, 'sls-bench');

    const shape = await startServerlessShape(emulators, names, registry.url);
    closing.push(() => shape.close());
    const { containers, api, prune, invokeLocal, gateway, functionUrl } = shape;
    const handingOver = await startApiGatewayLocal({
      handler: api.module.handler,
      functionTimeoutMs: HANDOVER_FUNCTION_TIMEOUT_MS,
    });
    closing.push(() => handingOver.close());
    const doors = [gateway, handingOver, functionUrl];

    const lines = [
      `${'step'.padEnd(58)} ${'DynamoDB'.padStart(8)} ${'jobs'.padStart(5)} ${'S3'.padStart(4)} ${'s'.padStart(5)}  front door calls; DynamoDB | S3 by operation`,
      '    per function: DynamoDB requests by the Catalog method that sent them | S3 by operation',
      '    (s: wall time of the step until the worker ended; job polls and progress writes grow with it)',
    ];
    const measure = async (step: string, run: () => Promise<void>) => {
      await invokeLocal.idle();
      for (const container of containers) container.reset();
      const before = doors.map((door) => door.invocations.length);
      const invokedBefore = invokeLocal.invocations.length;
      const started = performance.now();
      await run();
      // A job goes on in the worker after the front door answered: its requests are the step's.
      await invokeLocal.idle();
      const seconds = ((performance.now() - started) / 1000).toFixed(1);
      const calls = doors.flatMap((door, i) =>
        door.invocations
          .slice(before[i])
          .map((c) => `${c.method} ${c.rawPath.replace(/^\/v[\d.]+/, '')} ${c.status}`),
      );
      const invoked = invokeLocal.invocations.slice(invokedBefore);
      if (invoked.length > 0) calls.push(`Invoke ${WORKER_FUNCTION} x${invoked.length}`);
      const failed = invoked.filter((i) => i.outcome?.error !== undefined);
      if (failed.length > 0)
        throw new Error(`${step}: the worker failed: ${failed[0]!.outcome?.error}`);
      const dynamo = containers.reduce((sum, c) => sum + c.catalog.requests.total, 0);
      const jobs = containers.reduce((sum, c) => sum + jobRequests(c), 0);
      const s3 = containers.reduce((sum, c) => sum + c.s3.total, 0);
      const operations = (read: (c: LambdaContainer<unknown>) => Record<string, number>) => {
        const sum: Record<string, number> = {};
        for (const c of containers) {
          for (const [key, n] of Object.entries(read(c))) sum[key] = (sum[key] ?? 0) + n;
        }
        return Object.fromEntries(Object.entries(sum).sort(([a], [b]) => a.localeCompare(b)));
      };
      lines.push(
        `${step.padEnd(58)} ${String(dynamo).padStart(8)} ${String(jobs).padStart(5)} ${String(s3).padStart(4)} ${seconds.padStart(5)}  ` +
          `${calls.join(', ') || '(scheduled)'}; ${detail(operations((c) => c.catalog.requests.byOperation()))} | ${detail(operations((c) => c.s3.byKey()))}`,
      );
      for (const c of containers) {
        if (c.catalog.requests.total + c.s3.total === 0) continue;
        lines.push(
          `    ${c.name.padEnd(10)} ${String(c.catalog.requests.total).padStart(3)}: ${detail(c.dynamoByMethod.byKey())} | ${detail(c.s3.byKey())}`,
        );
      }
      log(`${step}: ${dynamo} DynamoDB (${jobs} for the job), ${s3} S3`);
    };
    const cli = async (hostPort: string, args: string[]): Promise<DockerResult> =>
      docker(hostPort, args, 120_000, { headers: { Authorization: `Bearer ${token}` } });
    const succeeds = (hostPort: string) => async (args: string[]) => {
      const result = await cli(hostPort, args);
      if (result.code !== 0) throw new Error(`docker ${args.join(' ')}: ${result.stderr}`);
    };
    const viaApi = succeeds(gateway.hostPort);
    const viaStream = succeeds(functionUrl.hostPort);

    await measure(`docker pull app:1, cold (${app.blobs.length} blobs)`, () =>
      viaApi(['pull', 'app:1']),
    );
    await measure('docker pull app:1 again (tag fresh)', () => viaApi(['pull', 'app:1']));
    await measure(
      `docker pull other:1 (${other.blobs.length} blobs, ${base.layers.length} cached)`,
      () => viaApi(['pull', 'other:1']),
    );
    await measure('docker image ls', () => viaApi(['image', 'ls']));
    await measure('docker image inspect app:1', () => viaApi(['image', 'inspect', 'app:1']));
    await measure(`docker save -o app.tar app:1 (${app.layers.length} layers)`, () =>
      viaApi(['save', '-o', join(work.path, 'app.tar'), 'app:1']),
    );
    await measure('docker save -o both.tar app:1 other:1', () =>
      viaApi(['save', '-o', join(work.path, 'both.tar'), 'app:1', 'other:1']),
    );
    await measure('docker save -o app.tar app:1, streaming function URL', () =>
      viaStream(['save', '-o', join(work.path, 'app-streamed.tar'), 'app:1']),
    );
    // The function logs its report (to CloudWatch on AWS): keep it off this report's stdout.
    const runPrune = async () => {
      const consoleLog = console.log;
      console.log = (...args: unknown[]) => log(`prune: ${args.map(String).join(' ')}`);
      try {
        await prune.module.handler();
      } finally {
        console.log = consoleLog;
      }
    };
    await measure('scheduled prune (functions/prune.ts), nothing due', runPrune);
    const blobCount = new Set([...app.blobs, ...other.blobs].map((b) => b.digest)).size;
    await measure(`docker image prune -a -f (2 images, ${blobCount} blobs)`, () =>
      viaApi(['image', 'prune', '-a', '-f']),
    );
    await measure('scheduled prune (functions/prune.ts), empty cache', runPrune);
    await measure(
      `docker pull app:1, cold, handed over (api timeout ${HANDOVER_FUNCTION_TIMEOUT_MS / 1000} s)`,
      async () => {
        const result = await cli(handingOver.hostPort, ['pull', 'app:1']);
        if (
          result.code === 0 ||
          !`${result.stdout}${result.stderr}`.includes('continues in the background')
        ) {
          throw new Error(`the pull was not handed over (${result.code}): ${result.stderr}`);
        }
      },
    );
    return lines;
  } finally {
    for (const close of closing.reverse()) await close();
    await registry.stop();
    await work.cleanup();
  }
}
