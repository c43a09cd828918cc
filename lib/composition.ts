import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { S3Client } from '@aws-sdk/client-s3';
import packageJson from '../package.json' with { type: 'json' };
import { FsBlobStore } from './adapters/fs-blob-store.ts';
import { SqliteCatalog } from './adapters/sqlite-catalog.ts';
import { TokenAuthenticator } from './auth/access.ts';
import type { ServeConfig } from './config.ts';
import type { EngineContext } from './engine/context.ts';
import type { BlobStore } from './ports/blob-store.ts';
import type { Catalog } from './ports/catalog.ts';
import { type Clock, systemClock } from './ports/clock.ts';
import type { Upstream } from './ports/upstream.ts';
import { PullService } from './pull.ts';
import { HttpUpstream } from './registry/http-upstream.ts';

export interface Composition {
  context: EngineContext;
  close(): Promise<void>;
}

/** The one place that turns validated configuration into the core and its adapters. */
export function composeEmbedded(
  config: ServeConfig,
  overrides: { clock?: Clock; upstream?: Upstream } = {},
): Composition {
  mkdirSync(config.dataDir, { recursive: true });
  const blobs = new FsBlobStore(config.dataDir);
  const catalog = new SqliteCatalog(join(config.dataDir, 'catalog.db'));
  return {
    context: engineContext(config, blobs, catalog, overrides),
    close: async () => {
      catalog.close();
    },
  };
}

/**
 * The AWS backend: blobs in S3, the catalog in DynamoDB, both clients from the SDK's standard
 * settings (region, credentials, AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL_DYNAMODB). The SDK is
 * loaded only here, so the embedded default starts without it. With `createResources` the
 * bucket and table are created when missing (for local emulators; production uses infra/).
 */
export async function composeAws(
  config: ServeConfig,
  overrides: { clock?: Clock; upstream?: Upstream } = {},
): Promise<Composition> {
  if (!config.aws) throw new Error('composeAws needs the aws settings of --backend aws');
  const { bucket, table, createResources } = config.aws;
  const [{ S3BlobStore }, { DynamoCatalog }, { S3SaveExports }] = await Promise.all([
    import('./adapters/s3-blob-store.ts'),
    import('./adapters/dynamo-catalog.ts'),
    import('./adapters/s3-save-exports.ts'),
  ]);
  const blobs = new S3BlobStore({ client: S3BlobStore.clientFromEnvironment(), bucket });
  const catalog = new DynamoCatalog({
    client: DynamoCatalog.clientFromEnvironment(),
    tableName: table,
  });
  try {
    if (createResources) {
      await catalog.createTable();
      await createBucketIfMissing(blobs.client, bucket);
    }
  } catch (error) {
    catalog.close();
    blobs.client.destroy();
    throw error;
  }
  return {
    context: {
      ...engineContext(config, blobs, catalog, overrides),
      exports: new S3SaveExports(blobs, { now: () => (overrides.clock ?? systemClock).now() }),
    },
    close: async () => {
      catalog.close();
      blobs.client.destroy();
    },
  };
}

/** The context every backend shares, around its blob store and catalog. */
function engineContext(
  config: ServeConfig,
  blobs: BlobStore,
  catalog: Catalog,
  overrides: { clock?: Clock; upstream?: Upstream },
): EngineContext {
  const clock = overrides.clock ?? systemClock;
  const upstream =
    overrides.upstream ??
    new HttpUpstream({ registries: config.registries, credentials: config.credentials, clock });
  const pulls = new PullService({
    catalog,
    blobs,
    upstream,
    clock,
    tagTtlMs: config.tagTtlMs,
    concurrency: config.concurrency,
  });
  return {
    catalog,
    blobs,
    upstream,
    pulls,
    clock,
    registries: config.registries,
    version: packageVersion(),
    maintenance: {
      gcGraceMs: config.gcGraceMs,
      ...(config.maxBytes !== undefined && { maxBytes: config.maxBytes }),
      ...(config.maxAgeMs !== undefined && { maxAgeMs: config.maxAgeMs }),
    },
    ...(config.requireAuth && { auth: new TokenAuthenticator(catalog, clock) }),
  };
}

/** For --create-resources against emulators; an existing bucket of ours is fine. */
async function createBucketIfMissing(client: S3Client, bucket: string): Promise<void> {
  const { CreateBucketCommand } = await import('@aws-sdk/client-s3');
  try {
    await client.send(new CreateBucketCommand({ Bucket: bucket }));
  } catch (error) {
    const name = (error as Error).name;
    if (name !== 'BucketAlreadyOwnedByYou' && name !== 'BucketAlreadyExists') throw error;
  }
}

// Imported rather than read from disk: a bundled Lambda handler has no package.json beside it.
function packageVersion(): string {
  return packageJson.version;
}
