/**
 * The `docker save` layout of Docker 25+: an OCI image layout (`oci-layout`, `index.json`,
 * `blobs/sha256/<hex>`) plus the `manifest.json` and `repositories` that `docker load` reads.
 * Layers go in as stored (compressed); Docker's loader decompresses them by sniffing, and the
 * manifests are the exact stored bytes, so RepoDigests survive a round trip.
 *
 * The archive is planned before it streams: every entry's name and size is known from the
 * manifests, which gives Content-Length up front and a byte-identical tar for the same images.
 */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { type Digest, digestHex } from '../digest.ts';
import { DigestMismatchError } from '../errors.ts';
import { MediaType } from '../media-types.ts';
import type { Descriptor } from '../model.ts';
import type { BlobStore } from '../ports/blob-store.ts';
import {
  archiveLength,
  END_OF_ARCHIVE,
  padding,
  type TarEntryHeader,
  tarHeader,
} from '../tar/ustar-writer.ts';
import { compare, familiarTag, type SaveItem } from './resolve.ts';

const IMAGE_NAME_ANNOTATION = 'io.containerd.image.name';
const REF_NAME_ANNOTATION = 'org.opencontainers.image.ref.name';

export type ArchiveEntry =
  | { kind: 'directory'; name: string }
  | { kind: 'bytes'; name: string; bytes: Buffer }
  | { kind: 'blob'; name: string; digest: Digest; size: number };

export interface ArchivePlan {
  entries: ArchiveEntry[];
  /** Exact length of the tar, end-of-archive blocks included. */
  length: number;
}

export function blobPath(digest: Digest): string {
  return `blobs/sha256/${digestHex(digest)}`;
}

/** Go's json.Marshal output (no spaces, no trailing newline): what Docker itself writes. */
function jsonBytes(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value));
}

export function planArchive(items: readonly SaveItem[]): ArchivePlan {
  const indexManifests: Descriptor[] = [];
  const manifestJson: Array<{ Config: string; RepoTags: string[] | null; Layers: string[] }> = [];
  const repositories = new Map<string, Map<string, string>>();
  const small = new Map<Digest, ArchiveEntry>();
  const layers = new Map<Digest, ArchiveEntry>();

  for (const { manifest, parsed, tags } of items) {
    const descriptor: Descriptor = {
      mediaType: manifest.mediaType,
      digest: manifest.digest,
      size: manifest.raw.length,
    };
    if (tags.length === 0) indexManifests.push(descriptor);
    for (const tag of tags) {
      indexManifests.push({
        ...descriptor,
        annotations: {
          [IMAGE_NAME_ANNOTATION]: `${tag.repository}:${tag.tag}`,
          [REF_NAME_ANNOTATION]: tag.tag,
        },
      });
    }
    small.set(manifest.digest, {
      kind: 'bytes',
      name: blobPath(manifest.digest),
      bytes: Buffer.from(manifest.raw),
    });
    small.set(parsed.config.digest, {
      kind: 'blob',
      name: blobPath(parsed.config.digest),
      digest: parsed.config.digest,
      size: parsed.config.size,
    });
    for (const layer of parsed.layers) {
      if (small.has(layer.digest) || layers.has(layer.digest)) continue;
      layers.set(layer.digest, {
        kind: 'blob',
        name: blobPath(layer.digest),
        digest: layer.digest,
        size: layer.size,
      });
    }
    const repoTags = tags.map(familiarTag);
    manifestJson.push({
      Config: blobPath(parsed.config.digest),
      // Docker writes null for an image saved without a tag.
      RepoTags: repoTags.length > 0 ? repoTags : null,
      Layers: parsed.layers.map((l) => blobPath(l.digest)),
    });
    // The legacy file maps each tag to the image's top layer, as Docker 25 does (by blob name).
    const top = parsed.layers.at(-1);
    for (const tag of top ? tags : []) {
      const [repo, name] = splitFamiliar(familiarTag(tag));
      const byTag = repositories.get(repo) ?? new Map<string, string>();
      repositories.set(repo, byTag);
      byTag.set(name, digestHex(top!.digest));
    }
  }
  for (const digest of small.keys()) layers.delete(digest);

  const entries: ArchiveEntry[] = [
    { kind: 'bytes', name: 'oci-layout', bytes: jsonBytes({ imageLayoutVersion: '1.0.0' }) },
    {
      kind: 'bytes',
      name: 'index.json',
      bytes: jsonBytes({
        schemaVersion: 2,
        mediaType: MediaType.ociIndex,
        manifests: indexManifests,
      }),
    },
    { kind: 'bytes', name: 'manifest.json', bytes: jsonBytes(manifestJson) },
    { kind: 'bytes', name: 'repositories', bytes: jsonBytes(sortedObject(repositories)) },
    { kind: 'directory', name: 'blobs/' },
    { kind: 'directory', name: 'blobs/sha256/' },
    // Manifests and configs first (small, and what a streaming reader wants early), then the
    // layers in image order, each shared layer once.
    ...[...small.values()].sort((a, b) => compare(a.name, b.name)),
    ...layers.values(),
  ];
  return { entries, length: archiveLength(entries.map(entrySize)) };
}

function entrySize(entry: ArchiveEntry): number {
  if (entry.kind === 'directory') return 0;
  return entry.kind === 'bytes' ? entry.bytes.length : entry.size;
}

function headerOf(entry: ArchiveEntry): Buffer {
  const header: TarEntryHeader =
    entry.kind === 'directory'
      ? { name: entry.name, size: 0, type: 'directory' }
      : { name: entry.name, size: entrySize(entry) };
  return tarHeader(header);
}

/** `localhost:5000/app:1` -> [`localhost:5000/app`, `1`]: the tag is after the last colon. */
function splitFamiliar(text: string): [string, string] {
  const colon = text.lastIndexOf(':');
  return [text.slice(0, colon), text.slice(colon + 1)];
}

function sortedObject(map: Map<string, Map<string, string>>): Record<string, unknown> {
  const out: Record<string, Record<string, string>> = {};
  for (const repo of [...map.keys()].sort(compare)) {
    const tags = map.get(repo)!;
    out[repo] = Object.fromEntries([...tags.entries()].sort((a, b) => compare(a[0], b[0])));
  }
  return out;
}

/**
 * Streams the planned archive. Blobs are read one at a time with backpressure (the generator
 * only pulls the next chunk when the consumer wants it) and hashed on the way: a blob that is
 * gone, shorter, longer or different than its digest fails the stream, so the client sees a
 * truncated tar (Content-Length unmet) rather than a silently wrong one.
 */
export function streamArchive(plan: ArchivePlan, blobs: BlobStore): Readable {
  return Readable.from(archiveChunks(plan, blobs), { objectMode: false, highWaterMark: 1 << 20 });
}

async function* archiveChunks(plan: ArchivePlan, blobs: BlobStore): AsyncGenerator<Buffer> {
  for (const entry of plan.entries) {
    yield headerOf(entry);
    if (entry.kind === 'directory') continue;
    if (entry.kind === 'bytes') {
      yield Buffer.concat([entry.bytes, padding(entry.bytes.length)]);
      continue;
    }
    const hash = createHash('sha256');
    let seen = 0;
    const body = await blobs.read(entry.digest);
    for await (const chunk of body as AsyncIterable<Buffer>) {
      seen += chunk.length;
      if (seen > entry.size) {
        throw new DigestMismatchError(`blob ${entry.digest}: more than ${entry.size} bytes`);
      }
      hash.update(chunk);
      yield chunk;
    }
    const digest = `sha256:${hash.digest('hex')}`;
    if (seen !== entry.size || digest !== entry.digest) {
      throw new DigestMismatchError(
        `blob ${entry.digest}: read ${seen} bytes hashing to ${digest}, expected ${entry.size}`,
      );
    }
    const pad = padding(entry.size);
    if (pad.length > 0) yield pad;
  }
  yield END_OF_ARCHIVE;
}
