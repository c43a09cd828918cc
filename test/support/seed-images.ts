/**
 * Synthetic images written straight into a catalog and blob store (no registry, no pull): real
 * blob files and records, a Docker schema2 manifest and an image summary, committed with the
 * same commitImage a pull uses. For unit tests of removal, prune, pins and retention.
 */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { type Digest, sha256 } from '../../lib/digest.ts';
import { MediaType } from '../../lib/media-types.ts';
import type { BlobStore } from '../../lib/ports/blob-store.ts';
import type { ImageCatalog, ManifestRecord } from '../../lib/ports/image-catalog.ts';

export interface SeedDeps {
  catalog: ImageCatalog;
  blobs: BlobStore;
}

export interface SeededBlob {
  digest: Digest;
  size: number;
}

export interface SeededImage {
  id: Digest;
  manifest: Digest;
  config: SeededBlob;
  layers: SeededBlob[];
  /** Config then layers. */
  blobs: SeededBlob[];
}

/** Deterministic bytes: a layer named `name` of `size` bytes is the same in every image. */
export function layerBytes(name: string, size: number): Buffer {
  const out = Buffer.alloc(size);
  let block = createHash('sha256').update(name).digest();
  for (let offset = 0; offset < size; offset += block.length) {
    block.copy(out, offset);
    block = createHash('sha256').update(block).digest();
  }
  return out;
}

export async function storeBlob(deps: SeedDeps, bytes: Buffer, now: number): Promise<SeededBlob> {
  const stored = await deps.blobs.write(Readable.from([bytes]));
  await deps.catalog.addBlob({ digest: stored.digest, size: stored.size }, now);
  return stored;
}

export async function seedImage(
  deps: SeedDeps,
  options: {
    name: string;
    /** Layer names and sizes; equal names share a blob across images. */
    layers: Array<[string, number]>;
    tags?: Array<[repository: string, tag: string]>;
    digestRef?: string;
    labels?: Record<string, string>;
    created?: string;
    now: number;
  },
): Promise<SeededImage> {
  const { now } = options;
  const layers: SeededBlob[] = [];
  for (const [name, size] of options.layers) {
    layers.push(await storeBlob(deps, layerBytes(name, size), now));
  }
  const configJson = {
    architecture: 'amd64',
    os: 'linux',
    created: options.created ?? '2024-01-01T00:00:00Z',
    config: { Labels: options.labels ?? {} },
    rootfs: { type: 'layers', diff_ids: layers.map((l) => l.digest) },
    history: [],
    // Makes the ID unique per image even when layers are equal.
    comment: options.name,
  };
  const config = await storeBlob(deps, Buffer.from(JSON.stringify(configJson)), now);
  const raw = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaType.dockerManifest,
      config: { mediaType: MediaType.dockerConfig, digest: config.digest, size: config.size },
      layers: layers.map((l) => ({
        mediaType: MediaType.dockerLayerGzip,
        digest: l.digest,
        size: l.size,
      })),
    }),
  );
  const digest = sha256(raw);
  const record: ManifestRecord = {
    digest,
    mediaType: MediaType.dockerManifest,
    raw,
    blobs: [config.digest, ...layers.map((l) => l.digest)],
    children: [],
    image: {
      configDigest: config.digest,
      created: configJson.created,
      os: 'linux',
      architecture: 'amd64',
      size: layers.reduce((sum, l) => sum + l.size, 0),
      labels: options.labels ?? {},
    },
    createdAt: now,
    lastUsedAt: now,
  };
  const tags = options.tags ?? [];
  await deps.catalog.commitImage({
    manifests: [record],
    blobs: record.blobs,
    ...(options.digestRef && {
      digestRef: { repository: options.digestRef, digest, manifest: digest },
    }),
    now,
  });
  for (const [repository, tag] of tags) {
    await deps.catalog.commitImage({
      manifests: [],
      blobs: [],
      tag: { repository, tag, manifest: digest, source: digest },
      now,
    });
  }
  return { id: config.digest, manifest: digest, config, layers, blobs: [config, ...layers] };
}
