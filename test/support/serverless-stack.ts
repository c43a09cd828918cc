/**
 * The deployed shape's back end without AWS, for the end-to-end tests of the Lambda front doors
 * (serverless-e2e: API Gateway; function-url-e2e: the streaming function URL;
 * serverless-jobs-e2e: API Gateway handing a long pull to the worker function): a real
 * docker-registry as docker.io (and any other upstream the options allow-list), DynamoDB Local
 * and fauxqs with the stack's table and bucket created as `cdk deploy` would, bearer tokens made
 * as `image-cache token create` would, and the function's environment in process.env. The
 * caller imports its handler after this, since lib/lambda/runtime.ts reads the environment on
 * the first invocation: one test file's module graph is one Lambda container.
 */
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import { createToken } from '../../lib/auth/tokens.ts';
import { lambdaRuntime } from '../../lib/lambda/runtime.ts';
import {
  awsEmulators,
  freshResourceNames,
  openAwsAdapters,
  stopAwsEmulators,
} from './aws-emulators.ts';
import { type DockerResult, docker } from './docker-cli.ts';
import { type RegistryServer, startRegistry } from './registry-server.ts';
import { type TempDir, tempDir } from './tmp.ts';

export interface ServerlessStack {
  registry: RegistryServer;
  work: TempDir;
  names: { bucket: string; table: string };
  /** The stack's bucket and table, read directly by the tests. */
  adapters: ReturnType<typeof openAwsAdapters>;
  /** Bearer tokens by scope, stored in the table. */
  tokens: { admin: string; read: string };
  /**
   * The real docker CLI against a front door on `hostPort`, sending the token through
   * config.json's HttpHeaders (the functions always require one); '' sends none.
   */
  docker(hostPort: string, args: string[], token?: string): Promise<DockerResult>;
  /** Stops what this stack started (not the emulators: see stopServerlessProcess). */
  close(): Promise<void>;
}

export interface ServerlessStackOptions {
  /** More allow-listed upstreams (name -> url) beside docker.io, e.g. a FakeRegistry. */
  registries?: Record<string, string>;
  /** More of the function's environment (IMAGE_CACHE_WORKER_FUNCTION, AWS_ENDPOINT_URL_LAMBDA). */
  env?: Record<string, string>;
}

export async function startServerlessStack(
  prefix: string,
  options: ServerlessStackOptions = {},
): Promise<ServerlessStack> {
  const [registry, emulators, work] = await Promise.all([
    startRegistry(),
    awsEmulators(),
    tempDir(prefix),
  ]);
  const names = freshResourceNames();
  const adapters = openAwsAdapters(emulators, names);
  await adapters.catalog.createTable();
  await adapters.blobs.client.send(new CreateBucketCommand({ Bucket: names.bucket }));
  const tokens = { admin: '', read: '' };
  for (const scope of ['admin', 'read'] as const) {
    tokens[scope] = (await createToken(adapters.catalog, { scope }, Date.now())).token;
  }
  // The function's environment (infra/image-cache-stack.ts), before its first invocation.
  Object.assign(process.env, emulators.env, {
    IMAGE_CACHE_BACKEND: 'aws',
    IMAGE_CACHE_BUCKET: names.bucket,
    IMAGE_CACHE_TABLE: names.table,
    IMAGE_CACHE_REGISTRIES: Object.entries({ 'docker.io': registry.url, ...options.registries })
      .map(([name, url]) => `${name}=${url}`)
      .join(','),
    ...options.env,
  });
  return {
    registry,
    work,
    names,
    adapters,
    tokens,
    docker: (hostPort, args, token = tokens.admin) =>
      docker(
        hostPort,
        args,
        60_000,
        token ? { headers: { Authorization: `Bearer ${token}` } } : {},
      ),
    close: async () => {
      adapters.close();
      await registry.stop();
      await work.cleanup();
    },
  };
}

/** For a file-level afterAll: the container's composition, then the emulators. */
export async function stopServerlessProcess(): Promise<void> {
  await (await lambdaRuntime().catch(() => undefined))?.composition.close();
  await stopAwsEmulators();
}
