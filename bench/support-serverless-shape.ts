/**
 * The deployed shape in one benchmark process, as bench/serverless-requests.ts and
 * bench/serverless-costs.ts measure it: the stack's four functions in Lambda containers of their
 * own (bench/support-lambda-containers.ts) with the environment the stack gives each, the api
 * function behind the local API Gateway, the streaming function behind the local function URL,
 * and the worker behind the local Invoke API (test/support/lambda-local.ts) that both fronts
 * dispatch jobs to. `docker.io` is the given registry.
 */

import { CreateBucketCommand } from '@aws-sdk/client-s3';
import type * as ApiFunction from '../functions/api.ts';
import type * as StreamFunction from '../functions/api-stream.ts';
import type * as PruneFunction from '../functions/prune.ts';
import type * as WorkerFunction from '../functions/worker.ts';
import { createToken } from '../lib/auth/tokens.ts';
import { type ApiGatewayLocal, startApiGatewayLocal } from '../test/support/api-gateway-local.ts';
import {
  type AwsEmulators,
  freshResourceNames,
  openAwsAdapters,
} from '../test/support/aws-emulators.ts';
import {
  type FunctionUrlLocal,
  startFunctionUrlLocal,
} from '../test/support/function-url-local.ts';
import { type LambdaLocal, startLambdaLocal } from '../test/support/lambda-local.ts';
import { type LambdaContainer, startLambdaContainer } from './support-lambda-containers.ts';

export const WORKER_FUNCTION = 'image-cache-worker';

/**
 * A fresh bucket and table on the emulators, made as `cdk deploy` would (the functions never
 * create them), and an admin token: the functions always require one, and admin covers pull,
 * save and prune.
 */
export async function freshStackResources(
  emulators: AwsEmulators,
): Promise<{ names: { bucket: string; table: string }; token: string }> {
  const names = freshResourceNames();
  const adapters = openAwsAdapters(emulators, names);
  try {
    await adapters.catalog.createTable();
    await adapters.blobs.client.send(new CreateBucketCommand({ Bucket: names.bucket }));
    const { token } = await createToken(adapters.catalog, { scope: 'admin' }, Date.now());
    return { names, token };
  } finally {
    adapters.close();
  }
}

export interface ServerlessShape {
  /** api, streamapi, worker, prune, in that order. */
  containers: Array<LambdaContainer<unknown>>;
  api: LambdaContainer<typeof ApiFunction>;
  stream: LambdaContainer<typeof StreamFunction>;
  worker: LambdaContainer<typeof WorkerFunction>;
  prune: LambdaContainer<typeof PruneFunction>;
  invokeLocal: LambdaLocal;
  /** Milliseconds of each worker invocation, in the order they ended (what Lambda bills). */
  workerRunsMs: number[];
  gateway: ApiGatewayLocal;
  functionUrl: FunctionUrlLocal;
  /** Closes the doors and the containers. */
  close(): Promise<void>;
}

export async function startServerlessShape(
  emulators: AwsEmulators,
  names: { bucket: string; table: string },
  registryUrl: string,
): Promise<ServerlessShape> {
  const closing: Array<() => Promise<void>> = [];
  const close = async () => {
    for (const fn of closing.reverse()) await fn();
    closing.length = 0;
  };
  try {
    // The emulators' endpoints are the SDK's settings for every client; the rest is per function.
    Object.assign(process.env, emulators.env);
    // infra/image-cache-stack.ts: the worker and prune lack IMAGE_CACHE_WORKER_FUNCTION.
    const environment = {
      ...process.env,
      IMAGE_CACHE_BACKEND: 'aws',
      IMAGE_CACHE_BUCKET: names.bucket,
      IMAGE_CACHE_TABLE: names.table,
    };
    const pulling = { ...environment, IMAGE_CACHE_REGISTRIES: `docker.io=${registryUrl}` };
    const start = async <M>(name: string, module: string, env: NodeJS.ProcessEnv) => {
      const container = await startLambdaContainer<M>(name, module, env);
      closing.push(() => container.close());
      return container;
    };
    const worker = await start<typeof WorkerFunction>('worker', '../functions/worker.ts', pulling);
    const prune = await start<typeof PruneFunction>('prune', '../functions/prune.ts', environment);
    const workerRunsMs: number[] = [];
    const invokeLocal = await startLambdaLocal({
      [WORKER_FUNCTION]: async (event) => {
        const started = performance.now();
        try {
          return await worker.module.handler(event);
        } finally {
          workerRunsMs.push(performance.now() - started);
        }
      },
    });
    closing.push(() => invokeLocal.close());
    // Read when the api and streaming compositions make their Lambda client.
    process.env.AWS_ENDPOINT_URL_LAMBDA = invokeLocal.endpoint;
    const fronting = { ...pulling, IMAGE_CACHE_WORKER_FUNCTION: WORKER_FUNCTION };
    const api = await start<typeof ApiFunction>('api', '../functions/api.ts', fronting);
    const stream = await start<typeof StreamFunction>(
      'streamapi',
      '../functions/api-stream.ts',
      fronting,
    );
    const gateway = await startApiGatewayLocal({ handler: api.module.handler });
    closing.push(() => gateway.close());
    const functionUrl = await startFunctionUrlLocal({ handler: stream.module.streamHandler });
    closing.push(() => functionUrl.close());
    return {
      containers: [api, stream, worker, prune] as Array<LambdaContainer<unknown>>,
      api,
      stream,
      worker,
      prune,
      invokeLocal,
      workerRunsMs,
      gateway,
      functionUrl,
      close,
    };
  } catch (error) {
    await close();
    throw error;
  }
}
