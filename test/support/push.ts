/**
 * Pushes generated images to a registry over the OCI distribution API: blobs by
 * POST-then-PUT monolithic upload (streamed from disk for big layers, skipped when a HEAD
 * finds them), then manifests by digest and by tag with their media type.
 */
import { createReadStream } from 'node:fs';
import { type Dispatcher, request } from 'undici';
import type { Digest } from '../../lib/digest.ts';
import type { GeneratedBlob, GeneratedImage, GeneratedIndex } from './image-factory.ts';

export interface PushTarget {
  /** Base URL of the registry, e.g. `http://127.0.0.1:5000`. */
  url: string;
  /** Repository path, e.g. `team/sub/app`. */
  repository: string;
  /** Sent with every request (e.g. Authorization). */
  headers?: Record<string, string>;
  dispatcher?: Dispatcher;
  /** Blob uploads in flight at once; default 4. */
  concurrency?: number;
}

export interface PushResult {
  uploaded: Digest[];
  /** Blobs the registry already had. */
  skipped: Digest[];
  /** Manifests put, children first, the pushed image or index last. */
  manifests: Digest[];
}

export class PushError extends Error {
  readonly status: number;
  constructor(message: string, status: number) {
    super(message);
    this.name = 'PushError';
    this.status = status;
  }
}

type Method = 'HEAD' | 'POST' | 'PUT';

async function send(
  target: PushTarget,
  method: Method,
  url: string,
  options: { body?: Buffer | NodeJS.ReadableStream; headers?: Record<string, string> } = {},
) {
  const response = await request(url, {
    method,
    body: options.body as Buffer | undefined,
    headers: { ...target.headers, ...options.headers },
    dispatcher: target.dispatcher,
  });
  let text = '';
  if (method === 'HEAD') await response.body.dump();
  else text = await response.body.text();
  return { status: response.statusCode, headers: response.headers, text };
}

function header(headers: Record<string, string | string[] | undefined>, name: string) {
  const value = headers[name];
  return Array.isArray(value) ? value[0] : value;
}

function fail(what: string, response: { status: number; text: string }): never {
  throw new PushError(
    `${what}: HTTP ${response.status} ${response.text.slice(0, 500)}`,
    response.status,
  );
}

function repoUrl(target: PushTarget, path: string): string {
  return `${target.url.replace(/\/+$/, '')}/v2/${target.repository}/${path}`;
}

/** Uploads one blob unless the registry already has it. */
export async function pushBlob(
  target: PushTarget,
  blob: GeneratedBlob,
): Promise<'uploaded' | 'exists'> {
  const head = await send(target, 'HEAD', repoUrl(target, `blobs/${blob.digest}`));
  if (head.status === 200) return 'exists';
  if (head.status !== 404) fail(`HEAD blob ${blob.digest}`, head);

  const started = await send(target, 'POST', repoUrl(target, 'blobs/uploads/'), {
    headers: { 'content-length': '0' },
  });
  if (started.status !== 202) fail(`start upload of ${blob.digest}`, started);
  const location = header(started.headers, 'location');
  if (!location) throw new PushError(`start upload of ${blob.digest}: no Location header`, 202);
  const uploadUrl = new URL(location, target.url);
  uploadUrl.searchParams.set('digest', blob.digest);

  const body =
    blob.bytes ?? (blob.path ? createReadStream(blob.path, { highWaterMark: 1 << 20 }) : undefined);
  if (!body) throw new Error(`blob ${blob.digest} has neither bytes nor a path`);
  const put = await send(target, 'PUT', uploadUrl.href, {
    body,
    headers: { 'content-type': 'application/octet-stream', 'content-length': String(blob.size) },
  });
  if (put.status !== 201) fail(`upload of ${blob.digest}`, put);
  return 'uploaded';
}

/** Puts a manifest under a tag or its digest, with its media type as Content-Type. */
export async function pushManifest(
  target: PushTarget,
  reference: string,
  manifest: { bytes: Buffer; mediaType: string; digest: Digest },
): Promise<void> {
  const response = await send(target, 'PUT', repoUrl(target, `manifests/${reference}`), {
    body: manifest.bytes,
    headers: { 'content-type': manifest.mediaType },
  });
  if (response.status !== 201) fail(`put manifest ${target.repository}:${reference}`, response);
  const digest = header(response.headers, 'docker-content-digest');
  if (digest && digest !== manifest.digest) {
    throw new PushError(`registry stored ${reference} as ${digest}, not ${manifest.digest}`, 201);
  }
}

async function pushBlobs(target: PushTarget, blobs: GeneratedBlob[], result: PushResult) {
  const queue = [...blobs];
  const worker = async () => {
    for (let blob = queue.shift(); blob; blob = queue.shift()) {
      const outcome = await pushBlob(target, blob);
      (outcome === 'uploaded' ? result.uploaded : result.skipped).push(blob.digest);
    }
  };
  await Promise.all(Array.from({ length: target.concurrency ?? 4 }, worker));
}

async function putEverywhere(
  target: PushTarget,
  manifest: { bytes: Buffer; mediaType: string; digest: Digest },
  tags: string[],
  result: PushResult,
) {
  await pushManifest(target, manifest.digest, manifest);
  for (const tag of tags) await pushManifest(target, tag, manifest);
  result.manifests.push(manifest.digest);
}

/** Pushes an image's blobs, then its manifest by digest and under each tag. */
export async function pushImage(
  target: PushTarget,
  image: GeneratedImage,
  options: { tags?: string[] } = {},
): Promise<PushResult> {
  const result: PushResult = { uploaded: [], skipped: [], manifests: [] };
  await pushBlobs(target, image.blobs, result);
  await putEverywhere(target, image, options.tags ?? [], result);
  return result;
}

/** Pushes every child image (registries check that an index's children exist), then the index. */
export async function pushIndex(
  target: PushTarget,
  index: GeneratedIndex,
  options: { tags?: string[] } = {},
): Promise<PushResult> {
  const result: PushResult = { uploaded: [], skipped: [], manifests: [] };
  await pushBlobs(target, index.blobs, result);
  for (const child of [...index.images, ...index.attestations]) {
    await putEverywhere(target, child, [], result);
  }
  await putEverywhere(target, index, options.tags ?? [], result);
  return result;
}
