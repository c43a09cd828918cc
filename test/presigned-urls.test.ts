import { createHash, createHmac, type Hash, type Hmac, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { GetObjectCommand, HeadObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { SignatureV4 } from '@smithy/signature-v4';
import type { AwsCredentialIdentity, SourceData } from '@smithy/types';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXPORT_LIFECYCLE_DAYS } from '../lib/adapters/s3/keys.ts';
import { CREDENTIAL_MARGIN_SECONDS } from '../lib/adapters/s3/presign.ts';
import { S3BlobStore } from '../lib/adapters/s3-blob-store.ts';
import { S3SaveExports } from '../lib/adapters/s3-save-exports.ts';
import { parseAwsSdkSettings } from '../lib/config/aws-sdk.ts';
import { sha256 } from '../lib/digest.ts';
import { type PlannedExport, storeExport } from '../lib/save/export.ts';
import { type S3TestServer, startS3Server } from './support/s3-server.ts';

/**
 * Every kind of presigned URL the S3 adapter hands out (blob redirect, save export, upload part),
 * checked with the SDK's own signer: fauxqs serves them without verifying signatures, so the
 * signature is recomputed here over the request the URL describes. Signed with `host` only and
 * without checksum mode, so curl or docker (which send nothing else) are not refused by S3.
 */
let server: S3TestServer;
let bucket: string;

beforeAll(async () => {
  server = await startS3Server();
  bucket = await server.createBucket();
});

afterAll(async () => {
  await server.removeBucket(bucket);
  await server.stop();
});

const REGION = 'us-east-1';
const STATIC: AwsCredentialIdentity = { accessKeyId: 'test', secretAccessKey: 'test' };

/** A client as on AWS: the SDK's default checksums (WHEN_SUPPORTED), credentials as given. */
function awsLikeClient(credentials: S3Client['config']['credentials'] | AwsCredentialIdentity) {
  return S3BlobStore.clientFor(parseAwsSdkSettings({}), {
    endpoint: server.endpoint,
    region: REGION,
    credentials,
    checksums: 'WHEN_SUPPORTED',
  });
}

/** node:crypto as the signer's hash (a Checksum: HMAC when given a secret). */
class NodeSha256 {
  readonly #secret: Buffer | undefined;
  #hash: Hash | Hmac;
  constructor(secret?: SourceData) {
    this.#secret = secret === undefined ? undefined : bytesOf(secret);
    this.#hash = this.#fresh();
  }
  #fresh(): Hash | Hmac {
    return this.#secret === undefined ? createHash('sha256') : createHmac('sha256', this.#secret);
  }
  update(data: SourceData): void {
    this.#hash.update(bytesOf(data));
  }
  async digest(): Promise<Uint8Array> {
    return this.#hash.digest();
  }
  reset(): void {
    this.#hash = this.#fresh();
  }
}

function bytesOf(data: SourceData): Buffer {
  if (typeof data === 'string') return Buffer.from(data);
  if (ArrayBuffer.isView(data)) return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  return Buffer.from(data);
}

/** Query parameters the signer adds itself; every other one is part of what was signed. */
const SIGNER_ADDS = new Set([
  'X-Amz-Algorithm',
  'X-Amz-Credential',
  'X-Amz-Date',
  'X-Amz-Expires',
  'X-Amz-SignedHeaders',
  'X-Amz-Signature',
  'X-Amz-Security-Token',
]);

/**
 * Recomputes the URL's SigV4 query signature with @smithy/signature-v4 over the request it
 * describes (method, host, path, its other query parameters, the `host` header), at the URL's
 * own X-Amz-Date and X-Amz-Expires, and checks what a plain client depends on.
 */
async function expectValidSignature(
  raw: string,
  method: 'GET' | 'PUT',
  credentials: AwsCredentialIdentity,
): Promise<URL> {
  const url = new URL(raw);
  const params = url.searchParams;
  expect(params.get('X-Amz-SignedHeaders')).toBe('host');
  for (const name of params.keys()) expect(name.toLowerCase()).not.toContain('checksum');
  const amzDate = params.get('X-Amz-Date') ?? '';
  const signingDate = new Date(
    amzDate.replace(/^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/, '$1-$2-$3T$4:$5:$6Z'),
  );
  const query: Record<string, string> = {};
  for (const [name, value] of params) if (!SIGNER_ADDS.has(name)) query[name] = value;
  const signer = new SignatureV4({
    credentials,
    region: REGION,
    service: 's3',
    sha256: NodeSha256,
    uriEscapePath: false,
    applyChecksum: false,
  });
  const signed = await signer.presign(
    {
      method,
      protocol: url.protocol,
      hostname: url.hostname,
      port: Number(url.port),
      path: url.pathname,
      query,
      // S3 presigned URLs leave the body unsigned (X-Amz-Content-Sha256 in the query); the
      // header only feeds the signer's payload hash.
      headers: { host: url.host, 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' },
    },
    {
      signingDate,
      expiresIn: Number(params.get('X-Amz-Expires')),
      unsignableHeaders: new Set(['x-amz-content-sha256']),
      unhoistableHeaders: new Set(['x-amz-content-sha256']),
    },
  );
  expect(params.get('X-Amz-Signature')).toBe(signed.query?.['X-Amz-Signature']);
  expect(params.get('X-Amz-Security-Token') ?? undefined).toBe(credentials.sessionToken);
  return url;
}

const exportKey = (name: string) => createHash('sha256').update(name).digest('hex');

describe('presigned URL signatures', () => {
  let store: S3BlobStore;
  beforeAll(() => {
    store = new S3BlobStore({ client: awsLikeClient(STATIC), bucket, uploadPartSize: 5 << 20 });
  });

  it('the SDK left alone signs checksum mode into a plain GET (what the presigner avoids)', async () => {
    const command = new GetObjectCommand({ Bucket: bucket, Key: 'any' });
    const url = new URL(await getSignedUrl(store.client, command, { expiresIn: 60 }));
    expect(url.search.toLowerCase()).toContain('checksum-mode');
  });

  it('a blob redirect URL: signed over host only, valid, and readable with plain fetch', async () => {
    const bytes = randomBytes(4096);
    const { digest } = await store.write(Readable.from([bytes]));
    const presigned = await store.presignedGetUrl(digest, 300);
    expect(presigned.expiresIn).toBe(300);
    const url = await expectValidSignature(presigned.url, 'GET', STATIC);
    expect(url.searchParams.get('X-Amz-Expires')).toBe('300');
    const response = await fetch(url);
    expect(response.status).toBe(200);
    expect(Buffer.from(await response.arrayBuffer()).equals(bytes)).toBe(true);
  });

  it('an export URL: signed over host only and valid', async () => {
    const exports = new S3SaveExports(store);
    const bytes = randomBytes(2048);
    const exported = await exports.export(exportKey('sig'), bytes.length, () =>
      Readable.from([bytes]),
    );
    const url = await expectValidSignature(exported.url, 'GET', STATIC);
    expect(url.searchParams.get('X-Amz-Expires')).toBe('900');
    expect((await fetch(url)).status).toBe(200);
  });

  it('an upload part URL: signed over host only and valid, with no checksum of an empty body', async () => {
    const ticket = await store.presignedUploads.createUpload(6 << 20);
    if (ticket.kind !== 'multipart') throw new Error('expected a multipart upload');
    expect(ticket.parts).toHaveLength(2);
    for (const part of ticket.parts) {
      const url = await expectValidSignature(part.url, 'PUT', STATIC);
      expect(url.searchParams.get('partNumber')).toBe(String(part.number));
      expect(url.searchParams.get('X-Amz-Expires')).toBe(String(ticket.expiresIn));
    }
    const put = await fetch(ticket.parts[1]!.url, { method: 'PUT', body: randomBytes(1 << 20) });
    expect(put.status).toBe(200);
    await store.presignedUploads.discardUpload(ticket.id);
  });
});

describe('presigned URL lifetime under expiring credentials', () => {
  /** Session credentials as a Lambda role's: a provider that answers ones of a known lifetime. */
  function expiringIn(seconds: number) {
    const calls: Array<{ forceRefresh?: boolean } | undefined> = [];
    const provider = async (options?: { forceRefresh?: boolean }) => {
      calls.push(options);
      return {
        accessKeyId: 'ASIATEST',
        secretAccessKey: 'session-secret',
        sessionToken: 'session-token',
        expiration: new Date(Date.now() + seconds * 1000),
      };
    };
    return { provider, calls };
  }

  it('caps an hour-long URL at the credentials’ ten minutes less the margin, and says so', async () => {
    const { provider } = expiringIn(600);
    const credentials = await provider();
    const store = new S3BlobStore({ client: awsLikeClient(provider), bucket });
    const { digest } = await store.write(Readable.from([randomBytes(100)]));
    const presigned = await store.presignedGetUrl(digest, 3600);
    const allowed = 600 - CREDENTIAL_MARGIN_SECONDS;
    expect(presigned.expiresIn).toBeLessThanOrEqual(allowed);
    expect(presigned.expiresIn).toBeGreaterThan(allowed - 10);
    const url = await expectValidSignature(presigned.url, 'GET', credentials);
    expect(url.searchParams.get('X-Amz-Expires')).toBe(String(presigned.expiresIn));

    const ticket = await store.presignedUploads.createUpload(1000);
    if (ticket.kind !== 'single') throw new Error('expected a single upload');
    expect(ticket.expiresIn).toBeLessThanOrEqual(allowed);
    expect(new URL(ticket.url).searchParams.get('X-Amz-Expires')).toBe(String(ticket.expiresIn));
    await expectValidSignature(ticket.url, 'PUT', credentials);

    const issued = Date.now();
    const exports = new S3SaveExports(store, { urlSeconds: 3600 });
    const exported = await exports.export(exportKey('capped'), 10, () =>
      Readable.from([randomBytes(10)]),
    );
    const stated = (exported.expires.getTime() - issued) / 1000;
    expect(stated).toBeLessThanOrEqual(allowed + 1);
    expect(stated).toBeGreaterThan(allowed - 10);
    const expires = Number(new URL(exported.url).searchParams.get('X-Amz-Expires'));
    expect(Math.abs(stated - expires)).toBeLessThan(2);
  });

  it('refuses to sign when even refreshed credentials have under a minute left', async () => {
    const { provider, calls } = expiringIn(30);
    const store = new S3BlobStore({ client: awsLikeClient(provider), bucket });
    await expect(store.presignedGetUrl(sha256('any'), 3600)).rejects.toThrow(
      /credentials expire at .* even after a refresh/,
    );
    expect(calls.some((options) => options?.forceRefresh === true)).toBe(true);
  });
});

describe('reusing an export near the end of its lifecycle', () => {
  const DAY_MS = 24 * 3600_000;

  it('hands out a stored export only while it outlives the URL, else exports it again', async () => {
    const store = new S3BlobStore({ client: awsLikeClient(STATIC), bucket });
    let clock = Date.now();
    const exports = new S3SaveExports(store, { urlSeconds: 900, now: () => clock });
    const bytes = randomBytes(1000);
    let opens = 0;
    // A save plan in all but its entries: storeExport only needs the key, size and bytes.
    const planned: PlannedExport = {
      key: exportKey('aging'),
      size: bytes.length,
      tarball: {
        items: [],
        plan: { entries: [], length: bytes.length },
        contentLength: bytes.length,
        open: () => {
          opens += 1;
          return Readable.from([bytes]);
        },
      },
    };
    await storeExport(exports, planned);
    expect(opens).toBe(1);
    const objectKey = store.keys.export(planned.key);
    const head = await store.client.send(new HeadObjectCommand({ Bucket: bucket, Key: objectKey }));
    const written = head.LastModified?.getTime() ?? Number.NaN;
    const lifecycleEnd = written + EXPORT_LIFECYCLE_DAYS * DAY_MS;

    // Six days on, a 15-minute URL still ends long before the object: reused as it is.
    clock = written + 6 * DAY_MS;
    const reused = await storeExport(exports, planned);
    expect(opens).toBe(1);
    expect(reused.expires.getTime()).toBe(clock + 900_000);

    // Half an hour before the lifecycle expires it, a URL could outlive it: exported again.
    clock = lifecycleEnd - 30 * 60_000;
    expect(await exports.find(planned.key, planned.size)).toBeUndefined();
    const fresh = await storeExport(exports, planned);
    expect(opens).toBe(2);
    const served = await fetch(fresh.url);
    expect(Buffer.from(await served.arrayBuffer()).equals(bytes)).toBe(true);
  });
});
