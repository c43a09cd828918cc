import { createHash, randomBytes } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import type { Digest } from '../../lib/digest.ts';
import { MediaType } from '../../lib/media-types.ts';
import type { Descriptor, Platform } from '../../lib/model.ts';
import { END_OF_ARCHIVE, padding, tarHeader } from '../../lib/tar/ustar-writer.ts';
import type { FakeRegistry } from './fake-registry.ts';

/**
 * Builds images from random bytes and pushes them into a FakeRegistry. Each layer is a small
 * gzip-compressed tar holding one file of random bytes, and the config lists its true diff_id,
 * so pulls that unpack and check layers accept them.
 */

export function digestOf(bytes: Uint8Array | string): Digest {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}` as Digest;
}

export function makeBlob(size: number): Buffer {
  return randomBytes(size);
}

/** A gzip-compressed tar with one file of `fileBytes` random bytes, and its diff_id. */
export function makeLayer(fileBytes: number): { bytes: Buffer; diffId: Digest } {
  const tar = Buffer.concat([
    tarHeader({ name: 'data.bin', size: fileBytes }),
    randomBytes(fileBytes),
    padding(fileBytes),
    END_OF_ARCHIVE,
  ]);
  return { bytes: gzipSync(tar, { level: 1 }), diffId: digestOf(tar) };
}

export interface PushedImage {
  repo: string;
  tag: string;
  digest: Digest;
  mediaType: string;
  raw: Buffer;
  config: { digest: Digest; bytes: Buffer };
  /** `size` is the blob's (compressed) size. */
  layers: { digest: Digest; bytes: Buffer; size: number; diffId: Digest }[];
  platform: Platform;
}

export interface ImageOptions {
  /** Bytes of the one file in each layer. Default one layer with a 1 KiB file. */
  layerSizes?: number[];
  /** OCI or Docker (schema 2) media types. Default `oci`. */
  format?: 'oci' | 'docker';
  platform?: Platform;
}

export function pushImage(
  registry: FakeRegistry,
  repo: string,
  tag: string,
  options: ImageOptions = {},
): PushedImage {
  const format = options.format ?? 'oci';
  const platform = options.platform ?? { os: 'linux', architecture: 'amd64' };
  const layers = (options.layerSizes ?? [1024]).map((fileBytes) => {
    const { bytes, diffId } = makeLayer(fileBytes);
    return { digest: registry.addBlob(bytes), bytes, size: bytes.length, diffId };
  });
  const configJson = {
    architecture: platform.architecture,
    os: platform.os,
    ...(platform.variant ? { variant: platform.variant } : {}),
    created: '2024-01-01T00:00:00Z',
    config: { Env: ['PATH=/usr/local/bin:/usr/bin:/bin'] },
    rootfs: { type: 'layers', diff_ids: layers.map((layer) => layer.diffId) },
    history: layers.map(() => ({ created: '2024-01-01T00:00:00Z', created_by: 'fake' })),
  };
  const configBytes = Buffer.from(JSON.stringify(configJson));
  const configDigest = registry.addBlob(configBytes);
  const mediaType = format === 'oci' ? MediaType.ociManifest : MediaType.dockerManifest;
  const manifest = {
    schemaVersion: 2,
    mediaType,
    config: {
      mediaType: format === 'oci' ? MediaType.ociConfig : MediaType.dockerConfig,
      digest: configDigest,
      size: configBytes.length,
    },
    layers: layers.map((layer) => ({
      mediaType: format === 'oci' ? MediaType.ociLayerGzip : MediaType.dockerLayerGzip,
      digest: layer.digest,
      size: layer.size,
    })),
  };
  const raw = Buffer.from(JSON.stringify(manifest, null, 2));
  const digest = registry.addManifest(repo, tag, raw, mediaType);
  return {
    repo,
    tag,
    digest,
    mediaType,
    raw,
    config: { digest: configDigest, bytes: configBytes },
    layers,
    platform,
  };
}

/** Pushes a multi-platform index (OCI index or Docker manifest list) over `images`. */
export function pushIndex(
  registry: FakeRegistry,
  repo: string,
  tag: string,
  images: PushedImage[],
  format: 'oci' | 'docker' = 'oci',
): { digest: Digest; raw: Buffer; mediaType: string } {
  const mediaType = format === 'oci' ? MediaType.ociIndex : MediaType.dockerManifestList;
  const manifests: Descriptor[] = images.map((image) => ({
    mediaType: image.mediaType,
    digest: image.digest,
    size: image.raw.length,
    platform: image.platform,
  }));
  const raw = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType, manifests }, null, 2));
  return { digest: registry.addManifest(repo, tag, raw, mediaType), raw, mediaType };
}

/** A schema 1 manifest as old registries still serve them (unsigned variant). */
export function schema1Manifest(repo: string, tag: string): string {
  return JSON.stringify({
    schemaVersion: 1,
    name: repo,
    tag,
    architecture: 'amd64',
    fsLayers: [{ blobSum: digestOf('') }],
    history: [{ v1Compatibility: '{"id":"x"}' }],
  });
}
