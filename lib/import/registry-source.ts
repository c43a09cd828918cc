import type { BlobFetcher, BlobProgress } from '../blob-fetcher.ts';
import type { Digest } from '../digest.ts';
import { BlobNotLiveError, ImageCacheError, NotFoundError } from '../errors.ts';
import { type ImageConfig, parseImageConfig } from '../image-config.ts';
import type { ImageManifest } from '../manifest.ts';
import { MAX_JSON_BYTES } from '../media-types.ts';
import type { Descriptor } from '../model.ts';
import type { BlobStore } from '../ports/blob-store.ts';
import type { ManifestRecord } from '../ports/image-catalog.ts';
import type { UpstreamRepository } from '../ports/upstream.ts';
import type { ImageSource, PresentBlob } from './image-source.ts';

export interface RegistrySourceDeps {
  fetcher: Pick<BlobFetcher, 'ensure'>;
  blobs: Pick<BlobStore, 'read'>;
}

/** The image a pull resolved: its platform was picked from the index (if any) already. */
export interface ResolvedImage {
  repo: UpstreamRepository;
  /** The digest the registry named (index or manifest). */
  source: Digest;
  index?: ManifestRecord;
  image: ManifestRecord;
  parsed: ImageManifest;
  platform?: string;
}

export interface RegistrySourceOptions {
  /** Aborted when the client stopped waiting: a download of the image may then be given up. */
  signal?: AbortSignal;
  onLayerProgress?: (layer: Descriptor, progress: BlobProgress) => void;
}

/**
 * An image in an upstream registry as an ImageSource: blobs are fetched (verified, recorded
 * live, shared with concurrent pulls and registry clients) by the BlobFetcher when the importer
 * asks, and found in the cache when they are there already.
 */
export function registrySource(
  deps: RegistrySourceDeps,
  resolved: ResolvedImage,
  options: RegistrySourceOptions = {},
): ImageSource {
  const { repo, image, parsed, index } = resolved;
  const { signal } = options;
  return {
    manifest: image,
    ...(index && { index }),
    sourceDigest: resolved.source,
    ...(resolved.platform !== undefined && { platform: resolved.platform }),
    config: parsed.config,
    layers: parsed.layers,
    // The fetcher asks the catalog every time, so a blob the collector took is fetched again
    // without being told.
    ensureBlob(descriptor, { isLayer }): Promise<PresentBlob> {
      if (!isLayer) {
        checkConfigSize(image.digest, descriptor);
        return deps.fetcher.ensure(repo, descriptor, { isLayer, signal });
      }
      const onLayerProgress = options.onLayerProgress;
      return deps.fetcher.ensure(repo, descriptor, {
        isLayer,
        signal,
        ...(onLayerProgress && { onProgress: (p) => onLayerProgress(descriptor, p) }),
      });
    },
    readConfig: () => readConfig(deps.blobs, parsed.config.digest),
  };
}

/** The config is read into memory: refuse an oversized one before a byte of it is fetched. */
function checkConfigSize(manifest: Digest, config: Descriptor): void {
  if (config.size > MAX_JSON_BYTES) {
    throw new ImageCacheError(
      'PAYLOAD_TOO_LARGE',
      `config ${config.digest} of ${manifest} says it has ${config.size} bytes; configs are limited to ${MAX_JSON_BYTES}`,
    );
  }
}

/** The collector may take the config between ensure and read: then it is fetched again. */
async function readConfig(blobs: Pick<BlobStore, 'read'>, digest: Digest): Promise<ImageConfig> {
  let raw: Uint8Array;
  try {
    raw = await readAll(await blobs.read(digest));
  } catch (error) {
    if (error instanceof NotFoundError) throw new BlobNotLiveError([digest]);
    throw error;
  }
  return parseImageConfig(raw);
}

async function readAll(stream: NodeJS.ReadableStream): Promise<Uint8Array> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}
