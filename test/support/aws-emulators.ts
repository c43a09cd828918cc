/**
 * The AWS backend's local stand-ins, DynamoDB Local and fauxqs (S3), started at most once per
 * process: a test file (vitest runs each file in a process of its own) or a benchmark. Whoever
 * uses them calls `stopAwsEmulators()` at the end (a file-level `afterAll`).
 */
import { randomBytes } from 'node:crypto';
import { DynamoCatalog } from '../../lib/adapters/dynamo-catalog.ts';
import { S3BlobStore } from '../../lib/adapters/s3-blob-store.ts';
import { type Composition, composeAws } from '../../lib/composition.ts';
import { parseServeArgs } from '../../lib/config.ts';
import type { TotalsSource } from '../../lib/metrics/stats-recorder.ts';
import { type DynamoDbLocal, LOCAL_REGION, startDynamoDbLocal } from './dynamodb-local.ts';
import { type S3TestServer, startS3Server } from './s3-server.ts';

export interface AwsEmulators {
  dynamo: DynamoDbLocal;
  s3: S3TestServer;
  /**
   * The SDK's standard settings that point a server at these emulators (`--backend aws`).
   * The credentials are the ones DynamoDbLocal.client() uses: DynamoDB Local keeps one
   * database per access key and region, so the server and the tests see the same tables.
   */
  env: Record<string, string>;
}

let started: Promise<AwsEmulators> | undefined;

export function awsEmulators(): Promise<AwsEmulators> {
  started ??= (async () => {
    const [dynamo, s3] = await Promise.allSettled([startDynamoDbLocal(), startS3Server()]);
    if (dynamo.status === 'rejected' || s3.status === 'rejected') {
      if (dynamo.status === 'fulfilled') await dynamo.value.stop();
      if (s3.status === 'fulfilled') await s3.value.stop();
      throw dynamo.status === 'rejected' ? dynamo.reason : (s3 as PromiseRejectedResult).reason;
    }
    const env = {
      AWS_ENDPOINT_URL_DYNAMODB: dynamo.value.endpoint,
      AWS_ENDPOINT_URL_S3: s3.value.endpoint,
      AWS_REGION: LOCAL_REGION,
      AWS_ACCESS_KEY_ID: 'local',
      AWS_SECRET_ACCESS_KEY: 'local',
    };
    return { dynamo: dynamo.value, s3: s3.value, env };
  })();
  return started;
}

export async function stopAwsEmulators(): Promise<void> {
  const running = started;
  started = undefined;
  if (!running) return;
  const emulators = await running.catch(() => undefined);
  if (emulators) await Promise.all([emulators.dynamo.stop(), emulators.s3.stop()]);
}

/** Names a fresh bucket and table would get (both valid for S3 and DynamoDB). */
export function freshResourceNames(): { bucket: string; table: string } {
  const id = randomBytes(6).toString('hex');
  return { bucket: `image-cache-${id}`, table: `image-cache-${id}` };
}

/**
 * The environment a function of the stack gets (infra/image-cache-stack.ts) for a fresh bucket
 * and table on the emulators; set `emulators.env` on the process too, for the SDK's credentials.
 */
export function functionEnvironment(emulators: AwsEmulators): Record<string, string> {
  const names = freshResourceNames();
  return {
    ...emulators.env,
    IMAGE_CACHE_BACKEND: 'aws',
    IMAGE_CACHE_BUCKET: names.bucket,
    IMAGE_CACHE_TABLE: names.table,
  };
}

/** A blob store and catalog of their own on the emulators, for tests reading what a server wrote. */
export function openAwsAdapters(
  emulators: AwsEmulators,
  names: { bucket: string; table: string },
): { blobs: S3BlobStore; catalog: DynamoCatalog; close(): void } {
  const blobs = new S3BlobStore({ client: emulators.s3.client(), bucket: names.bucket });
  const catalog = new DynamoCatalog({
    client: emulators.dynamo.client(),
    tableName: names.table,
  });
  return {
    blobs,
    catalog,
    close: () => {
      catalog.close();
      blobs.client.destroy();
    },
  };
}

/**
 * The AWS backend composed in-process on the emulators, on a fresh bucket and table it creates;
 * `requireAuth` turns access control on.
 */
export async function composeOnEmulators(
  options: { requireAuth?: boolean; totals?: TotalsSource } = {},
): Promise<{ composition: Composition; names: { bucket: string; table: string } }> {
  const emulators = await awsEmulators();
  const names = freshResourceNames();
  // The SDK's standard settings, read by composeAws's clients.
  Object.assign(process.env, emulators.env);
  const config = parseServeArgs(['--backend', 'aws', '--create-resources'], {
    ...emulators.env,
    IMAGE_CACHE_BUCKET: names.bucket,
    IMAGE_CACHE_TABLE: names.table,
    IMAGE_CACHE_REGISTRIES: '',
  });
  const composition = await composeAws(
    { ...config, requireAuth: options.requireAuth ?? false },
    options.totals ? { totals: options.totals } : {},
  );
  return { composition, names };
}
