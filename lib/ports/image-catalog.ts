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

/** An image manifest as `image ls`, inspect, history, rmi and save read it: no raw bytes. */
export interface ImageManifestEntry {
  digest: Digest;
  blobs: Digest[];
  image: ImageSummary;
  createdAt: number;
}

/** A tag as an image listing shows it; checkedAt (pull revalidation bookkeeping) is left out. */
export type ImageTagEntry = Omit<TagRecord, 'checkedAt'>;

/** One image manifest with the names that lead to it. */
export interface ImageEntry {
  manifest: ImageManifestEntry;
  /** Tags whose `manifest` is this one, by repository then tag. */
  tags: ImageTagEntry[];
  /** Digest refs whose `manifest` is this one, by repository then digest. */
  digestRefs: DigestRefRecord[];
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
  /**
   * sha256 of the uncompressed layer, as a config's rootfs.diff_ids must list it; absent for
   * configs and for layers that could not be unpacked (zstd without a decoder).
   */
  diffId?: Digest;
  state: BlobState;
  generation: number;
  touchedAt: number;
}

/** `docker`'s "a container uses this image", for a cache: prune and rm leave it alone. */
export interface PinRecord {
  /** What the user pinned, normalised: `docker.io/library/nginx:1`, or `sha256:<id>`. */
  name: string;
  /** The image manifest the pin holds. */
  manifest: Digest;
  note: string;
  createdAt: number;
  /** After this (ms since epoch) the pin no longer protects anything. */
  expiresAt?: number;
}

export interface ImageCommit {
  /** Manifests to store (an index and/or an image manifest); existing ones are kept as is. */
  manifests: ManifestRecord[];
  /** Every blob the image needs. Each must be live; each is touched in the same transaction. */
  blobs: Digest[];
  tag?: Omit<TagRecord, 'updatedAt' | 'checkedAt'>;
  digestRef?: Omit<DigestRefRecord, 'createdAt'>;
  /**
   * The image manifest a pull delivered with this commit: its pull count goes up by one in the
   * same write. Loads and re-tags leave it out.
   */
  pulled?: Digest;
  now: number;
}

/** How a manifest is used: what the dashboard's image listing shows beside each image. */
export interface ManifestUsage {
  lastUsedAt: number;
  /** Pulls that delivered it: Engine API pulls (cached or not) and registry-door manifest GETs. */
  pulls: number;
}

/** Why a manifest was read: a pull counts, anything else (a save) only marks it used. */
export type ManifestUse = 'pull' | 'read';

/**
 * Blobs, manifests, tags, digest refs and pins: what pull, load, the mirror, removal, retention
 * and the collector read and change. Implementations make `commitImage` atomic: either the tag,
 * the manifests and the blob touches all happen, or none does (invariant 2).
 */
export interface ImageCatalog {
  getBlob(digest: Digest): Promise<BlobRecord | undefined>;
  /**
   * Conditional touch: when the record is live, bumps generation and touchedAt and answers
   * 'live'; 'deleting' means the collector owns it (treat as absent, wait); 'absent' means no
   * record.
   */
  touchBlob(digest: Digest, now: number): Promise<'live' | 'deleting' | 'absent'>;
  /**
   * Records a blob as live after its bytes were stored. Inserts when no record exists (or
   * touches a live one, filling a missing unpackedSize or diffId); answers 'deleting' when the
   * collector holds it, in which case the caller waits and stores the bytes again.
   */
  addBlob(
    blob: { digest: Digest; size: number; unpackedSize?: number; diffId?: Digest },
    now: number,
  ): Promise<'live' | 'deleting'>;
  /**
   * Fills what a live layer record does not know yet (read from its stored bytes). Never
   * creates a record: only the writer that just stored the bytes may (a record stands for
   * bytes that exist). Answers whether the record was live.
   */
  fillLayerFacts(
    digest: Digest,
    facts: { unpackedSize?: number; diffId?: Digest },
  ): Promise<boolean>;

  /** Atomically stores manifests, touches blobs and sets the tag; BlobNotLiveError otherwise. */
  commitImage(commit: ImageCommit): Promise<void>;

  getManifest(digest: Digest): Promise<ManifestRecord | undefined>;
  /** Every image manifest (not indexes), for `docker image ls`. */
  listImages(): Promise<ManifestRecord[]>;
  /** Marks a stored manifest used (unknown digests: no-op); a `pull` also counts one pull. */
  touchManifest(digest: Digest, now: number, use?: ManifestUse): Promise<void>;
  /**
   * lastUsedAt and pull counts of the given manifests (those stored), read by key: the cost
   * grows with the digests asked about.
   */
  manifestUsage(digests: readonly Digest[]): Promise<Map<Digest, ManifestUsage>>;

  // --- what requests read (`image ls`, inspect, history, rmi, save): never the whole catalog

  /** Every image manifest with its names, newest first (createdAt, then digest). */
  listImageEntries(): Promise<ImageEntry[]>;
  /**
   * The entries whose manifest digest or config digest (the image ID) starts with
   * `sha256:<hexPrefix>`, plus every other entry with the same config, so an image built from
   * them is whole. Same order as listImageEntries. `hexPrefix` is lowercase hex, not empty.
   */
  findImageEntries(hexPrefix: string): Promise<ImageEntry[]>;
  /** The tags of one repository, by tag (the registry's tag list). */
  listRepositoryTags(repository: RepositoryName): Promise<TagRecord[]>;
  /**
   * Maintenance: writes the index records (image listings, blob -> manifest) that records
   * stored before the indexes existed lack, and drops ones a commit that died halfway left.
   * Runs on the maintenance schedule; answers how many records it wrote (0 once done).
   */
  backfillImageEntries(): Promise<number>;

  getTag(repository: RepositoryName, tag: string): Promise<TagRecord | undefined>;
  listTags(): Promise<TagRecord[]>;
  markTagChecked(repository: RepositoryName, tag: string, now: number): Promise<void>;

  getDigestRef(repository: RepositoryName, digest: Digest): Promise<DigestRefRecord | undefined>;
  listDigestRefs(): Promise<DigestRefRecord[]>;

  // --- removal (docker rmi, prune) ---

  /** Every manifest, indexes included: the roots of the collector's mark phase. */
  listManifests(): Promise<ManifestRecord[]>;
  /**
   * Of the given blobs, those some stored manifest names: the roots restricted to a few
   * candidates, for the collection after an rmi or prune. Reads an index (blob -> manifests),
   * so its cost grows with the blobs asked about, not with the catalog. Same consistency as
   * listManifests: a manifest stored before the call is seen.
   */
  referencedBlobs(blobs: Iterable<Digest>): Promise<Set<Digest>>;
  /** Removes a tag; answers the removed record, or undefined when there was none. */
  deleteTag(repository: RepositoryName, tag: string): Promise<TagRecord | undefined>;
  deleteDigestRef(repository: RepositoryName, digest: Digest): Promise<DigestRefRecord | undefined>;
  /**
   * Atomically deletes a manifest record, but only while nothing refers to it: no tag or
   * digest ref names it (as `manifest`, or as `source`/`digest` for an index) and no pin holds
   * it. A pull that re-tags the image concurrently therefore either keeps it or re-inserts it.
   */
  deleteManifestIfUnreferenced(digest: Digest): Promise<boolean>;

  // --- pins ---

  putPin(pin: PinRecord): Promise<void>;
  deletePin(name: string): Promise<PinRecord | undefined>;
  listPins(): Promise<PinRecord[]>;

  // --- garbage collection (the blob state machine) ---

  listBlobs(): Promise<BlobRecord[]>;
  /** Conditional live -> deleting, only if the generation is still the one observed. */
  beginBlobDeletion(digest: Digest, expectedGeneration: number): Promise<boolean>;
  /** deleting -> gone: removes the record, only while it is in state deleting. */
  finishBlobDeletion(digest: Digest): Promise<void>;
  /**
   * For a stored file without any record (a crash between write and record): inserts a record
   * in state deleting if none exists, so writers wait while the collector removes the file.
   */
  claimOrphanBlob(digest: Digest, size: number, now: number): Promise<boolean>;
}
