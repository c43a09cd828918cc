import type { Digest } from '../digest.ts';
import type { RepositoryName } from '../model.ts';

/** What `docker image ls` needs, read from the config once at pull time. */
export interface ImageSummary {
  configDigest: Digest;
  /** RFC 3339 from the config; absent configs leave it empty like Docker does. */
  created?: string;
  os: string;
  architecture: string;
  variant?: string;
  /** Bytes of the files in all layers (what Docker shows as SIZE). */
  size: number;
  labels: Record<string, string>;
}

export interface ManifestRecord {
  digest: Digest;
  mediaType: string;
  /** Exact bytes as the registry or tarball had them, so the digest stays verifiable. */
  raw: Uint8Array;
  /** Image manifest: config then layers. Index: empty. GC marks from these. */
  blobs: Digest[];
  /** Index: the child manifests it lists (only some may be stored). Image: empty. */
  children: Digest[];
  image?: ImageSummary;
  createdAt: number;
  lastUsedAt: number;
}

export interface TagRecord {
  repository: RepositoryName;
  tag: string;
  /** The platform-specific image manifest the tag resolves to. */
  manifest: Digest;
  /** What the registry answered for the tag (index or manifest); RepoDigests show it. */
  source: Digest;
  /** `os/arch[/variant]` when the tag was resolved from an index. */
  platform?: string;
  updatedAt: number;
  /** Last time the upstream confirmed the tag (pull TTL revalidation). */
  checkedAt: number;
}

/** `repo@digest`: recorded on every pull (RepoDigests) and by digest pulls. */
export interface DigestRefRecord {
  repository: RepositoryName;
  digest: Digest;
  manifest: Digest;
  createdAt: number;
}

export type BlobState = 'live' | 'deleting';

/**
 * GC bookkeeping for one blob. `generation` changes on every touch; the collector's
 * live -> deleting transition is conditional on the generation it observed before marking,
 * so a writer that touched the blob in between always wins.
 */
export interface BlobRecord {
  digest: Digest;
  size: number;
  /** Bytes of the files inside a layer; absent for configs and unknown layers. */
  unpackedSize?: number;
  state: BlobState;
  generation: number;
  touchedAt: number;
}

export interface ImageCommit {
  /** Manifests to store (an index and/or an image manifest); existing ones are kept as is. */
  manifests: ManifestRecord[];
  /** Every blob the image needs. Each must be live; each is touched in the same transaction. */
  blobs: Digest[];
  tag?: Omit<TagRecord, 'updatedAt' | 'checkedAt'>;
  digestRef?: Omit<DigestRefRecord, 'createdAt'>;
  now: number;
}

/**
 * Tags, manifests and blob records. Implementations make `commitImage` atomic: either the tag,
 * the manifests and the blob touches all happen, or none does (invariant 2).
 */
export interface Catalog {
  getBlob(digest: Digest): Promise<BlobRecord | undefined>;
  /**
   * Conditional touch: when the record is live, bumps generation and touchedAt and answers
   * 'live'; 'deleting' means the collector owns it (treat as absent, wait); 'absent' means no
   * record.
   */
  touchBlob(digest: Digest, now: number): Promise<'live' | 'deleting' | 'absent'>;
  /**
   * Records a blob as live after its bytes were stored. Inserts when no record exists (or
   * touches a live one, filling a missing unpackedSize); answers 'deleting' when the collector
   * holds it, in which case the caller waits and stores the bytes again.
   */
  addBlob(
    blob: { digest: Digest; size: number; unpackedSize?: number },
    now: number,
  ): Promise<'live' | 'deleting'>;

  /** Atomically stores manifests, touches blobs and sets the tag; BlobNotLiveError otherwise. */
  commitImage(commit: ImageCommit): Promise<void>;

  getManifest(digest: Digest): Promise<ManifestRecord | undefined>;
  /** Image manifests whose config digest (the image ID) or own digest starts with the hex. */
  findImages(hexPrefix: string): Promise<ManifestRecord[]>;
  /** Every image manifest (not indexes), for `docker image ls`. */
  listImages(): Promise<ManifestRecord[]>;
  touchManifest(digest: Digest, now: number): Promise<void>;

  getTag(repository: RepositoryName, tag: string): Promise<TagRecord | undefined>;
  listTags(): Promise<TagRecord[]>;
  markTagChecked(repository: RepositoryName, tag: string, now: number): Promise<void>;

  getDigestRef(repository: RepositoryName, digest: Digest): Promise<DigestRefRecord | undefined>;
  listDigestRefs(): Promise<DigestRefRecord[]>;
}
