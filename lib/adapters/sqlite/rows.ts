/** Catalog rows as SQLite returns them, and the records they stand for. */
import type Database from 'better-sqlite3';
import type { Digest } from '../../digest.ts';
import type { Scope } from '../../model.ts';
import type {
  BlobRecord,
  BlobState,
  DigestRefRecord,
  ImageManifestEntry,
  ImageSummary,
  ManifestRecord,
  PinRecord,
  TagRecord,
} from '../../ports/image-catalog.ts';
import type { TokenRecord } from '../../ports/token-store.ts';

/** Timestamps are integer milliseconds; a fractional Date value must not become a REAL. */
export const ms = Math.trunc;

/**
 * Prepared once per SQL text, for every part sharing the connection; better-sqlite3 statements
 * are reusable and cheap to keep.
 */
export class Statements {
  readonly #db: Database.Database;
  readonly #cache = new Map<string, Database.Statement>();

  constructor(db: Database.Database) {
    this.#db = db;
  }

  sql<T = unknown>(source: string): Database.Statement<unknown[], T> {
    let statement = this.#cache.get(source);
    if (!statement) {
      statement = this.#db.prepare(source);
      this.#cache.set(source, statement);
    }
    return statement as Database.Statement<unknown[], T>;
  }

  /** The one row a query or `... RETURNING *` answers, as a record; undefined for none. */
  record<R, T>(source: string, toRecord: (row: R) => T, ...params: unknown[]): T | undefined {
    const row = this.sql<R>(source).get(...params);
    return row && toRecord(row);
  }

  /** Runs a conditional write; answers whether it changed exactly one row. */
  changedOne(source: string, ...params: unknown[]): boolean {
    return this.sql(source).run(...params).changes === 1;
  }
}

export interface ManifestRow {
  digest: string;
  media_type: string;
  raw: Buffer;
  blobs: string;
  children: string;
  image: string | null;
  created_at: number;
  last_used_at: number;
}

export interface TagRow {
  repository: string;
  tag: string;
  manifest: string;
  source: string;
  platform: string | null;
  updated_at: number;
  checked_at: number;
}

export interface DigestRefRow {
  repository: string;
  digest: string;
  manifest: string;
  created_at: number;
}

export interface PinRow {
  name: string;
  manifest: string;
  note: string;
  created_at: number;
  expires_at: number | null;
}

export interface TokenRow {
  hash: string;
  id: string;
  name: string;
  scope: Scope;
  created_at: number;
  last_used_at: number | null;
}

export interface BlobRow {
  digest: string;
  size: number;
  unpacked_size: number | null;
  diff_id: string | null;
  state: BlobState;
  generation: number;
  touched_at: number;
}

// Optional fields are left out rather than set to undefined, so records compare strictly equal.
export function toBlob(row: BlobRow): BlobRecord {
  return {
    digest: row.digest as Digest,
    size: row.size,
    ...(row.unpacked_size !== null && { unpackedSize: row.unpacked_size }),
    ...(row.diff_id !== null && { diffId: row.diff_id as Digest }),
    state: row.state,
    generation: row.generation,
    touchedAt: row.touched_at,
  };
}

export function toManifest(row: ManifestRow): ManifestRecord {
  return {
    digest: row.digest as Digest,
    mediaType: row.media_type,
    raw: row.raw,
    blobs: JSON.parse(row.blobs) as Digest[],
    children: JSON.parse(row.children) as Digest[],
    ...(row.image !== null && { image: JSON.parse(row.image) as ImageSummary }),
    createdAt: row.created_at,
    lastUsedAt: row.last_used_at,
  };
}

/** The columns an image entry reads: everything but the raw bytes. */
export type ManifestEntryRow = Pick<ManifestRow, 'digest' | 'blobs' | 'image' | 'created_at'>;

export function toManifestEntry(row: ManifestEntryRow): ImageManifestEntry {
  return {
    digest: row.digest as Digest,
    blobs: JSON.parse(row.blobs) as Digest[],
    image: JSON.parse(row.image ?? 'null') as ImageSummary,
    createdAt: row.created_at,
  };
}

export function toTag(row: TagRow): TagRecord {
  return {
    repository: row.repository,
    tag: row.tag,
    manifest: row.manifest as Digest,
    source: row.source as Digest,
    ...(row.platform !== null && { platform: row.platform }),
    updatedAt: row.updated_at,
    checkedAt: row.checked_at,
  };
}

export function toDigestRef(row: DigestRefRow): DigestRefRecord {
  return {
    repository: row.repository,
    digest: row.digest as Digest,
    manifest: row.manifest as Digest,
    createdAt: row.created_at,
  };
}

export function toPin(row: PinRow): PinRecord {
  return {
    name: row.name,
    manifest: row.manifest as Digest,
    note: row.note,
    createdAt: row.created_at,
    ...(row.expires_at !== null && { expiresAt: row.expires_at }),
  };
}

export function toToken(row: TokenRow): TokenRecord {
  return {
    id: row.id,
    hash: row.hash,
    name: row.name,
    scope: row.scope,
    createdAt: row.created_at,
    ...(row.last_used_at !== null && { lastUsedAt: row.last_used_at }),
  };
}
