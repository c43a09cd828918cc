import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import {
  CreateBucketCommand,
  DeleteBucketCommand,
  DeleteObjectsCommand,
  ListObjectsV2Command,
  type S3Client,
} from '@aws-sdk/client-s3';
import { S3BlobStore } from '../../lib/adapters/s3-blob-store.ts';
import { parseAwsSdkSettings } from '../../lib/config/aws-sdk.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/**
 * fauxqs 1.9 (the last line that runs on Node 20) serves S3 from memory. It runs in a child
 * process of its own so its memory never counts in the conformance suite's in-process memory
 * bound, and it listens on 127.0.0.1 only (its CLI binds 0.0.0.0, hence buildApp + listen).
 * Closing stdin stops it, so a crashed test run leaves no server behind.
 */
const SERVER_SCRIPT = `
// fauxqs 1.9.2 sorts a listing with localeCompare but pages it with \`key <= startAfter\`: with
// keys mixing cases (blobs/sha256/README beside lowercase hex) a paginated ListObjectsV2 repeats
// or skips keys. S3 lists in UTF-8 binary order; this process only runs fauxqs, so binary
// order for every string comparison here is what S3 does.
String.prototype.localeCompare = function (that) {
  const self = String(this);
  return self < that ? -1 : self > that ? 1 : 0;
};
import { buildApp } from 'fauxqs';
const app = buildApp({ logger: false });
const address = await app.listen({ port: 0, host: '127.0.0.1' });
process.stdout.write(JSON.stringify({ address }) + '\\n');
process.stdin.on('end', () => app.close().finally(() => process.exit(0)));
process.stdin.resume();
`;

export interface S3TestServer {
  /** e.g. http://127.0.0.1:41091 */
  endpoint: string;
  /** A client as the service would build it (path style, WHEN_REQUIRED checksums). */
  client(settings?: { checksums?: 'WHEN_SUPPORTED' | 'WHEN_REQUIRED' }): S3Client;
  /** A fresh, empty bucket. */
  createBucket(): Promise<string>;
  /** Deletes every object in the bucket, then the bucket. */
  removeBucket(bucket: string): Promise<void>;
  stop(): Promise<void>;
}

export async function startS3Server(): Promise<S3TestServer> {
  const child = spawn(process.execPath, ['--input-type=module', '-e', SERVER_SCRIPT], {
    cwd: root,
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const endpoint = await readAddress(child);
  const admin = clientFor(endpoint);

  return {
    endpoint,
    client: (settings = {}) => clientFor(endpoint, settings.checksums),
    async createBucket() {
      const bucket = `test-${randomUUID()}`;
      await admin.send(new CreateBucketCommand({ Bucket: bucket }));
      return bucket;
    },
    async removeBucket(bucket) {
      let token: string | undefined;
      do {
        const page = await admin.send(
          new ListObjectsV2Command({ Bucket: bucket, ContinuationToken: token }),
        );
        const objects = (page.Contents ?? []).map(({ Key }) => ({ Key }));
        if (objects.length > 0) {
          await admin.send(
            new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: objects, Quiet: true } }),
          );
        }
        token = page.IsTruncated ? page.NextContinuationToken : undefined;
      } while (token);
      await admin.send(new DeleteBucketCommand({ Bucket: bucket }));
    },
    async stop() {
      admin.destroy();
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = once(child, 'exit');
      child.stdin?.end();
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    },
  };
}

function clientFor(endpoint: string, checksums?: 'WHEN_SUPPORTED' | 'WHEN_REQUIRED'): S3Client {
  // No standard settings: the server, region and credentials are all pinned here.
  return S3BlobStore.clientFor(parseAwsSdkSettings({}), {
    endpoint,
    region: 'us-east-1',
    credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
    ...(checksums ? { checksums } : {}),
  });
}

async function readAddress(child: ChildProcess): Promise<string> {
  if (!child.stdout) throw new Error('fauxqs: no stdout');
  const lines = createInterface({ input: child.stdout });
  const timeout = AbortSignal.timeout(30_000);
  const exited = once(child, 'exit', { signal: timeout }).then(([code, signal]) => {
    throw new Error(`fauxqs exited before listening (code ${code}, signal ${signal})`);
  });
  const listening = once(lines, 'line', { signal: timeout }).then(([line]) => {
    const { address } = JSON.parse(String(line)) as { address: string };
    return address;
  });
  try {
    return await Promise.race([listening, exited]);
  } catch (error) {
    child.kill('SIGKILL');
    throw error;
  } finally {
    lines.close();
    exited.catch(() => undefined);
    listening.catch(() => undefined);
  }
}
