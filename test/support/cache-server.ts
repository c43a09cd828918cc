import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { FsBlobStore } from '../../lib/adapters/fs-blob-store.ts';
import { SqliteCatalog } from '../../lib/adapters/sqlite-catalog.ts';
import type { Scope } from '../../lib/auth/scopes.ts';
import { createToken } from '../../lib/auth/tokens.ts';
import { parseServeArgs } from '../../lib/config.ts';
import { type Digest, digestHex } from '../../lib/digest.ts';
import type { TotalsSource } from '../../lib/metrics/stats-recorder.ts';
import { type RunningServer, startServer } from '../../lib/server.ts';
import {
  type AwsEmulators,
  awsEmulators,
  freshResourceNames,
  openAwsAdapters,
} from './aws-emulators.ts';

export type CacheBackend = 'embedded' | 'aws';

/**
 * The backends the server-level suites run over (`describe.each(CACHE_BACKENDS)`): both, unless
 * IMAGE_CACHE_TEST_BACKENDS (e.g. `embedded`) narrows it while working on one.
 */
export const CACHE_BACKENDS: CacheBackend[] = (
  process.env.IMAGE_CACHE_TEST_BACKENDS?.split(',')
    .map((name) => name.trim())
    .filter(Boolean) ?? ['embedded', 'aws']
).map((name) => {
  if (name !== 'embedded' && name !== 'aws') {
    throw new Error(`IMAGE_CACHE_TEST_BACKENDS: ${JSON.stringify(name)} is not embedded or aws`);
  }
  return name;
});

export interface CacheServer extends RunningServer {
  backend: CacheBackend;
  dataDir: string;
  /** `127.0.0.1:<port>`, for DOCKER_HOST=tcp://... */
  hostPort: string;
  /** hex -> size of every blob the server's blob store holds (files, or S3 objects). */
  blobFiles(): Promise<Map<string, number>>;
  /** Digests of the manifests in the server's catalog, sorted. */
  manifestDigests(): Promise<Digest[]>;
  /** The S3 bucket and DynamoDB table of the aws backend. */
  aws?: { bucket: string; table: string };
  /** Keys of the aws backend's bucket under `prefix` (none on the embedded backend). */
  objectKeys(prefix: string): Promise<string[]>;
  /** A token of `scope` in the server's catalog, as `image-cache token create` makes one. */
  token(scope: Scope, name?: string): Promise<string>;
}

/**
 * Starts the project's own server in process on a free port with a fresh data folder, resolving
 * registries as `IMAGE_CACHE_REGISTRIES` would. With `backend: 'aws'` it runs `--backend aws
 * --create-resources` on a fresh bucket and table in DynamoDB Local and fauxqs, started once
 * per test file (see aws-emulators.ts: the file calls `afterAll(stopAwsEmulators)`).
 */
export async function startCacheServer(
  options: {
    registries: string;
    flags?: string[];
    dataDir?: string;
    backend?: CacheBackend;
    /** More settings, as the server's environment would hold them. */
    env?: NodeJS.ProcessEnv;
    /** Counters the stats history records instead of the server's own CacheMetrics. */
    totals?: TotalsSource;
  } = { registries: '' },
): Promise<CacheServer> {
  const backend = options.backend ?? 'embedded';
  const dataDir = options.dataDir ?? (await mkdtemp(join(tmpdir(), 'image-cache-data-')));
  const env: NodeJS.ProcessEnv = { ...options.env, IMAGE_CACHE_REGISTRIES: options.registries };
  const flags = ['--port', '0', '--data', dataDir, ...(options.flags ?? [])];
  let aws: { emulators: AwsEmulators; names: { bucket: string; table: string } } | undefined;
  if (backend === 'aws') {
    const emulators = await awsEmulators();
    // Endpoints and region go through the configuration; credentials the SDK's provider chain
    // finds in the process environment, as for `npm start -- --backend aws`.
    Object.assign(env, emulators.env);
    Object.assign(process.env, emulators.env);
    const names = freshResourceNames();
    env.IMAGE_CACHE_BUCKET = names.bucket;
    env.IMAGE_CACHE_TABLE = names.table;
    flags.push('--backend', 'aws', '--create-resources');
    aws = { emulators, names };
  }
  const config = parseServeArgs(flags, env);
  const server = await startServer(config, options.totals ? { totals: options.totals } : {});
  const adapters = () => {
    if (aws) return openAwsAdapters(aws.emulators, aws.names);
    const catalog = new SqliteCatalog(join(dataDir, 'catalog.db'));
    return { blobs: new FsBlobStore(dataDir), catalog, close: () => catalog.close() };
  };
  return {
    ...server,
    backend,
    dataDir,
    hostPort: `127.0.0.1:${server.port}`,
    blobFiles: async () => {
      const { blobs, close } = adapters();
      try {
        const files = new Map<string, number>();
        for await (const blob of blobs.list()) files.set(digestHex(blob.digest), blob.size);
        return files;
      } finally {
        close();
      }
    },
    manifestDigests: async () => {
      const { catalog, close } = adapters();
      try {
        return (await catalog.listManifests()).map((m) => m.digest).sort();
      } finally {
        close();
      }
    },
    ...(aws && { aws: aws.names }),
    token: async (scope, name) => {
      const { catalog, close } = adapters();
      try {
        return (await createToken(catalog, { scope, ...(name && { name }) }, Date.now())).token;
      } finally {
        close();
      }
    },
    objectKeys: async (prefix) => {
      if (!aws) return [];
      const client = aws.emulators.s3.client();
      try {
        const page = await client.send(
          new ListObjectsV2Command({ Bucket: aws.names.bucket, Prefix: prefix }),
        );
        return (page.Contents ?? []).map((object) => object.Key!);
      } finally {
        client.destroy();
      }
    },
    close: async () => {
      await server.close();
      if (!options.dataDir) await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/** Reads a pull's NDJSON progress stream into parsed messages. */
export async function pullVia(
  baseUrl: string,
  params: Record<string, string>,
): Promise<{ status: number; messages: Array<Record<string, unknown>>; body: string }> {
  const url = new URL('/images/create', baseUrl);
  for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v);
  const response = await fetch(url, { method: 'POST' });
  const body = await response.text();
  const messages = body
    .split(/\r?\n/)
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  return { status: response.status, messages, body };
}
