/**
 * The AWS backend composed in-process on the emulators (fauxqs, DynamoDB Local) with access
 * control on, for the save-export tests: its router, a read token, the S3 writes to export
 * keys as the backend's own client sends them (to count uploads), and a gate that holds those
 * writes, so a test can keep an export job running for exactly as long as it needs to.
 */
import type { Readable } from 'node:stream';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import type { S3BlobStore } from '../../lib/adapters/s3-blob-store.ts';
import { createToken } from '../../lib/auth/tokens.ts';
import type { Composition } from '../../lib/composition.ts';
import type { HttpResponse } from '../../lib/engine/http.ts';
import { createRouter, type Router } from '../../lib/engine/router.ts';
import { composeOnEmulators } from './aws-emulators.ts';

export interface AwsSaveBackend {
  composition: Composition;
  router: Router;
  blobs: S3BlobStore;
  token: string;
  /** Command names of the S3 writes to `exports/`, in order; clear it between steps. */
  writes: string[];
  /** Holds every export write until the returned function is called. */
  holdExportWrites(): () => void;
  /** The tarball a plain (streamed) save of `names` answers: what every export must equal. */
  streamedSave(names: string): Promise<Buffer>;
  /** The export objects in the bucket. */
  exportKeys(): Promise<Array<{ key: string; size: number }>>;
  close(): Promise<void>;
}

const EXPORT_WRITE = /^(PutObject|CreateMultipartUpload|UploadPart|CompleteMultipartUpload)/;

export async function startAwsSaveBackend(): Promise<AwsSaveBackend> {
  const { composition, names } = await composeOnEmulators({ requireAuth: true });
  const blobs = composition.context.blobs as S3BlobStore;
  const writes: string[] = [];
  let gate: Promise<void> = Promise.resolve();
  blobs.client.middlewareStack.add(
    (next, context) => async (args) => {
      const name = context.commandName ?? '';
      const key = (args.input as { Key?: string }).Key ?? '';
      if (key.startsWith(blobs.keys.exportsPrefix) && EXPORT_WRITE.test(name)) {
        writes.push(name);
        await gate;
      }
      return next(args);
    },
    { step: 'initialize', name: 'countExportWrites' },
  );
  const token = (await createToken(composition.context.tokens, { scope: 'read' }, Date.now()))
    .token;
  const router = createRouter(composition.context);
  return {
    composition,
    router,
    blobs,
    token,
    writes,
    holdExportWrites: () => {
      let release = () => {};
      gate = new Promise((resolve) => {
        release = resolve;
      });
      return release;
    },
    streamedSave: async (names) => {
      const response = await router(getRequest('/images/get', `names=${names}`, token));
      if (response.status !== 200) throw new Error(`the streamed save answered ${response.status}`);
      return bodyBytes(response);
    },
    exportKeys: async () => {
      const listed = await blobs.client.send(
        new ListObjectsV2Command({ Bucket: names.bucket, Prefix: blobs.keys.exportsPrefix }),
      );
      return (listed.Contents ?? []).map((o) => ({ key: o.Key!, size: o.Size! }));
    },
    close: () => composition.close(),
  };
}

/** A GET as the router sees it, with the bearer token. */
export function getRequest(
  path: string,
  query: string,
  token: string,
  headers: Record<string, string> = {},
) {
  return {
    method: 'GET',
    path,
    query: new URLSearchParams(query),
    headers: { authorization: `Bearer ${token}`, ...headers },
  };
}

export async function bodyBytes(response: HttpResponse): Promise<Buffer> {
  const { body } = response;
  if (body === undefined) return Buffer.alloc(0);
  if (typeof body === 'string') return Buffer.from(body);
  if (body instanceof Uint8Array) return Buffer.from(body);
  const chunks: Buffer[] = [];
  for await (const chunk of body as Readable) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}
