import type { Digest } from '../digest.ts';
import type { ImageConfig } from '../image-config.ts';
import type { Descriptor } from '../model.ts';

/** A manifest's bytes as the source has them (digest verified by whoever read them). */
export interface SourceManifest {
  digest: Digest;
  mediaType: string;
  raw: Uint8Array;
}

/** What making a blob present learnt about it. */
export interface PresentBlob {
  /** True when the bytes were in the cache before this import; false when it stored them. */
  existed: boolean;
  /** Bytes of the files in a layer, when known. */
  unpackedSize?: number;
  /** sha256 of the uncompressed layer, when known. */
  diffId?: Digest;
}

export interface EnsureBlobOptions {
  /** A layer must be a tar; anything else (the config) is bytes. */
  isLayer: boolean;
  /**
   * Set when a commit was refused because the collector took the blob: the source must store
   * it again (or record again the bytes it wrote), not trust what it did the first time.
   */
  again: boolean;
}

/**
 * One image as a registry, a tarball or a layout has it, in the spirit of go-containerregistry's
 * v1.Image: the manifest and descriptors are known up front, blob I/O happens only when the
 * importer asks for it. Choosing the platform of an index is the source's business; the
 * importer sees one image manifest (and the index it was reached through, stored with it).
 */
export interface ImageSource {
  manifest: SourceManifest;
  /** The index the image was reached through, if any: stored beside it as the tag's source. */
  index?: SourceManifest & { children: Digest[] };
  /** The digest the image is known by where it came from (the index's or the manifest's). */
  sourceDigest: Digest;
  /** `os/arch[/variant]` when the image was picked from an index. */
  platform?: string;
  config: Descriptor;
  layers: readonly Descriptor[];
  /** Makes a blob of this image present and live in the cache (config or a layer). */
  ensureBlob(descriptor: Descriptor, options: EnsureBlobOptions): Promise<PresentBlob>;
  /**
   * The config, parsed; called after ensureBlob made it present. Throws BlobNotLiveError when
   * the collector took it in between, so the importer fetches it again.
   */
  readConfig(): Promise<ImageConfig>;
}
