import type Database from 'better-sqlite3';
import type { Digest } from '../../digest.ts';
import { BlobNotLiveError, NotFoundError } from '../../errors.ts';
import { entriesOf } from '../../image-entries.ts';
import type { RepositoryName } from '../../model.ts';
import type {
  ImageCatalog,
  ImageCommit,
  ManifestUsage,
  ManifestUse,
  PinRecord,
} from '../../ports/image-catalog.ts';
import type { GroupCommit } from './group-commit.ts';
import {
  type BlobRow,
  type DigestRefRow,
  type ManifestEntryRow,
  type ManifestRow,
  ms,
  type PinRow,
  type Statements,
  type TagRow,
  toBlob,
  toDigestRef,
  toManifest,
  toManifestEntry,
  toPin,
  toTag,
} from './rows.ts';

/** The manifest columns an image entry needs (not the raw bytes). */
const ENTRY_COLUMNS = 'digest, blobs, image, created_at';

/**
 * Blobs, manifests, tags, digest refs and pins in the catalog file. Every state change of a
 * blob record is a single conditional statement (`... WHERE state = 'live'`), the same shape as
 * a DynamoDB conditional write, so both adapters share one GC protocol.
 */
export class SqliteImageCatalog implements ImageCatalog {
  readonly #statements: Statements;
  readonly #group: GroupCommit;
  readonly #commitTx: Database.Transaction<(commit: ImageCommit) => void>;
  readonly #deleteManifestTx: Database.Transaction<(digest: Digest) => boolean>;

  constructor(db: Database.Database, statements: Statements, group: GroupCommit) {
    this.#statements = statements;
    this.#group = group;
    this.#commitTx = db.transaction((commit: ImageCommit) => this.#commitInTx(commit));
    this.#deleteManifestTx = db.transaction((digest: Digest) => this.#deleteManifestInTx(digest));
  }

  #sql<T = unknown>(source: string) {
    return this.#statements.sql<T>(source);
  }

  async getBlob(digest: Digest) {
    const row = this.#sql<BlobRow>('SELECT * FROM blobs WHERE digest = ?').get(digest);
    return row && toBlob(row);
  }

  async touchBlob(digest: Digest, now: number) {
    if (this.#touch(digest, now)) return 'live';
    const row = this.#sql<BlobRow>('SELECT state FROM blobs WHERE digest = ?').get(digest);
    return row?.state === 'deleting' ? 'deleting' : 'absent';
  }

  #touch(digest: Digest, now: number): boolean {
    return this.#statements.changedOne(
      `UPDATE blobs SET generation = generation + 1, touched_at = ?
       WHERE digest = ? AND state = 'live'`,
      ms(now),
      digest,
    );
  }

  async addBlob(
    blob: { digest: Digest; size: number; unpackedSize?: number; diffId?: Digest },
    now: number,
  ) {
    // One statement: insert, or touch a live record; the WHERE leaves a deleting one untouched
    // (changes = 0), which is the answer 'deleting'.
    const live = this.#statements.changedOne(
      `INSERT INTO blobs (digest, size, unpacked_size, diff_id, state, generation, touched_at)
       VALUES (?, ?, ?, ?, 'live', (SELECT value + 1 FROM blob_generation_floor), ?)
       ON CONFLICT (digest) DO UPDATE SET
         generation = generation + 1,
         touched_at = excluded.touched_at,
         unpacked_size = COALESCE(unpacked_size, excluded.unpacked_size),
         diff_id = COALESCE(diff_id, excluded.diff_id)
       WHERE state = 'live'`,
      blob.digest,
      blob.size,
      blob.unpackedSize ?? null,
      blob.diffId ?? null,
      ms(now),
    );
    return live ? 'live' : 'deleting';
  }

  async fillLayerFacts(digest: Digest, facts: { unpackedSize?: number; diffId?: Digest }) {
    return this.#statements.changedOne(
      `UPDATE blobs SET unpacked_size = COALESCE(unpacked_size, ?), diff_id = COALESCE(diff_id, ?)
       WHERE digest = ? AND state = 'live'`,
      facts.unpackedSize ?? null,
      facts.diffId ?? null,
      digest,
    );
  }

  async commitImage(commit: ImageCommit) {
    // IMMEDIATE takes the write lock before the liveness reads, so no collector can flip a
    // blob to deleting between the check and the touches.
    this.#commitTx.immediate(commit);
  }

  #commitInTx(commit: ImageCommit): void {
    const now = ms(commit.now);
    const stored = new Set(commit.manifests.map((m) => m.digest));
    const referenced = [commit.tag?.manifest, commit.digestRef?.manifest].filter(
      (d): d is Digest => d !== undefined,
    );
    // Invariant 2 is enforced here, not trusted to callers: the blobs of every manifest the
    // commit stores or points a name at must be live, not only those listed in `blobs`.
    const required = new Set<Digest>(commit.blobs);
    for (const m of commit.manifests) for (const b of m.blobs) required.add(b);
    for (const digest of referenced) {
      if (stored.has(digest)) continue;
      const row = this.#statements
        .sql<ManifestRow>('SELECT blobs FROM manifests WHERE digest = ?')
        .get(digest);
      if (!row) throw new NotFoundError(`manifest ${digest} is not stored`);
      for (const b of JSON.parse(row.blobs) as Digest[]) required.add(b);
    }

    const stateOf = this.#sql<BlobRow>('SELECT state FROM blobs WHERE digest = ?');
    const notLive = [...required].filter((d) => stateOf.get(d)?.state !== 'live').sort();
    if (notLive.length > 0) throw new BlobNotLiveError(notLive);

    const insertManifest = this.#sql(
      `INSERT INTO manifests (digest, media_type, raw, blobs, children, image, config_digest,
                                created_at, last_used_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (digest) DO NOTHING`,
    );
    for (const m of commit.manifests) {
      insertManifest.run(
        m.digest,
        m.mediaType,
        Buffer.from(m.raw.buffer, m.raw.byteOffset, m.raw.byteLength),
        JSON.stringify(m.blobs),
        JSON.stringify(m.children),
        m.image ? JSON.stringify(m.image) : null,
        m.image?.configDigest ?? null,
        ms(m.createdAt),
        now,
      );
    }
    const useManifest = this.#sql('UPDATE manifests SET last_used_at = ? WHERE digest = ?');
    for (const digest of new Set([...stored, ...referenced])) useManifest.run(now, digest);
    if (commit.pulled) {
      this.#sql('UPDATE manifests SET pulls = pulls + 1 WHERE digest = ?').run(commit.pulled);
    }
    for (const digest of required) this.#touch(digest, now);

    if (commit.tag) {
      const t = commit.tag;
      this.#statements
        .sql(
          `INSERT INTO tags (repository, tag, manifest, source, platform, updated_at, checked_at)
           VALUES (?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT (repository, tag) DO UPDATE SET manifest = excluded.manifest,
             source = excluded.source, platform = excluded.platform,
             updated_at = excluded.updated_at, checked_at = excluded.checked_at`,
        )
        .run(t.repository, t.tag, t.manifest, t.source, t.platform ?? null, now, now);
    }
    if (commit.digestRef) {
      const r = commit.digestRef;
      // createdAt stays as first recorded; the manifest may move (another platform's pull).
      this.#statements
        .sql(
          `INSERT INTO digest_refs (repository, digest, manifest, created_at) VALUES (?, ?, ?, ?)
           ON CONFLICT (repository, digest) DO UPDATE SET manifest = excluded.manifest`,
        )
        .run(r.repository, r.digest, r.manifest, now);
    }
  }

  async getManifest(digest: Digest) {
    const row = this.#sql<ManifestRow>('SELECT * FROM manifests WHERE digest = ?').get(digest);
    return row && toManifest(row);
  }

  async listImages() {
    return this.#sql<ManifestRow>(
      'SELECT * FROM manifests WHERE image IS NOT NULL ORDER BY created_at DESC, digest',
    )
      .all()
      .map(toManifest);
  }

  // --- image entries: indexed reads (manifests by digest and config_digest, names by manifest)

  async listImageEntries() {
    const manifests = this.#sql<ManifestEntryRow>(
      `SELECT ${ENTRY_COLUMNS} FROM manifests WHERE image IS NOT NULL`,
    ).all();
    return entriesOf(
      manifests.map(toManifestEntry),
      await this.listTags(),
      await this.listDigestRefs(),
    );
  }

  async findImageEntries(hexPrefix: string) {
    // A prefix as a range, so both lookups use an index; 'g' sorts after every hex digit.
    const from = `sha256:${hexPrefix}`;
    const to = `${from}g`;
    const manifests = this.#sql<ManifestEntryRow>(
      `SELECT ${ENTRY_COLUMNS} FROM manifests WHERE image IS NOT NULL AND config_digest IN (
         SELECT config_digest FROM manifests WHERE digest >= @from AND digest < @to
         UNION SELECT config_digest FROM manifests WHERE config_digest >= @from AND config_digest < @to)`,
    ).all({ from, to });
    const digests = JSON.stringify(manifests.map((m) => m.digest));
    const tags = this.#sql<TagRow>(
      'SELECT * FROM tags WHERE manifest IN (SELECT value FROM json_each(?))',
    ).all(digests);
    const refs = this.#sql<DigestRefRow>(
      'SELECT * FROM digest_refs WHERE manifest IN (SELECT value FROM json_each(?))',
    ).all(digests);
    return entriesOf(manifests.map(toManifestEntry), tags.map(toTag), refs.map(toDigestRef));
  }

  async listRepositoryTags(repository: RepositoryName) {
    return this.#sql<TagRow>('SELECT * FROM tags WHERE repository = ? ORDER BY tag')
      .all(repository)
      .map(toTag);
  }

  /** Nothing to backfill: entries are read from the tables themselves. */
  async backfillImageEntries() {
    return 0;
  }

  async touchManifest(digest: Digest, now: number, use: ManifestUse = 'read') {
    this.#sql('UPDATE manifests SET last_used_at = ?, pulls = pulls + ? WHERE digest = ?').run(
      ms(now),
      use === 'pull' ? 1 : 0,
      digest,
    );
  }

  async manifestUsage(digests: readonly Digest[]) {
    const rows = this.#sql<{ digest: Digest; last_used_at: number; pulls: number }>(
      `SELECT digest, last_used_at, pulls FROM manifests
         WHERE digest IN (SELECT value FROM json_each(?))`,
    ).all(JSON.stringify(digests));
    return new Map<Digest, ManifestUsage>(
      rows.map((r) => [r.digest, { lastUsedAt: r.last_used_at, pulls: r.pulls }]),
    );
  }

  async getTag(repository: RepositoryName, tag: string) {
    const row = this.#sql<TagRow>('SELECT * FROM tags WHERE repository = ? AND tag = ?').get(
      repository,
      tag,
    );
    return row && toTag(row);
  }

  async listTags() {
    return this.#sql<TagRow>('SELECT * FROM tags ORDER BY repository, tag').all().map(toTag);
  }

  async markTagChecked(repository: RepositoryName, tag: string, now: number) {
    this.#sql('UPDATE tags SET checked_at = ? WHERE repository = ? AND tag = ?').run(
      ms(now),
      repository,
      tag,
    );
  }

  async getDigestRef(repository: RepositoryName, digest: Digest) {
    const row = this.#sql<DigestRefRow>(
      'SELECT * FROM digest_refs WHERE repository = ? AND digest = ?',
    ).get(repository, digest);
    return row && toDigestRef(row);
  }

  async listDigestRefs() {
    return this.#sql<DigestRefRow>('SELECT * FROM digest_refs ORDER BY repository, digest')
      .all()
      .map(toDigestRef);
  }

  // --- removal (docker rmi, prune)

  async listManifests() {
    return this.#sql<ManifestRow>('SELECT * FROM manifests ORDER BY digest').all().map(toManifest);
  }

  async referencedBlobs(blobs: Iterable<Digest>) {
    const named = this.#sql<{ found: number }>(
      'SELECT EXISTS (SELECT 1 FROM manifest_blobs WHERE blob = ?) AS found',
    );
    return new Set([...new Set(blobs)].filter((blob) => named.get(blob)?.found === 1));
  }

  async deleteTag(repository: RepositoryName, tag: string) {
    return this.#deleteName('tags', 'tag', toTag, repository, tag);
  }

  async deleteDigestRef(repository: RepositoryName, digest: Digest) {
    return this.#deleteName('digest_refs', 'digest', toDigestRef, repository, digest);
  }

  /** Removes a tag or a digest ref of a repository; answers the removed record. */
  #deleteName<R, T>(
    table: 'tags' | 'digest_refs',
    column: 'tag' | 'digest',
    toRecord: (row: R) => T,
    repository: RepositoryName,
    name: string,
  ) {
    const sql = `DELETE FROM ${table} WHERE repository = ? AND ${column} = ? RETURNING *`;
    return this.#statements.record(sql, toRecord, repository, name);
  }

  async deleteManifestIfUnreferenced(digest: Digest) {
    // IMMEDIATE: the reference checks and the delete see one state, even across processes, so
    // a commit that re-tags the manifest lands either before (kept) or after (re-inserted).
    return this.#deleteManifestTx.immediate(digest);
  }

  #deleteManifestInTx(digest: Digest): boolean {
    // Any pin counts, expired or not: expired pins are removed by retention, not ignored here.
    return this.#statements.changedOne(
      `DELETE FROM manifests WHERE digest = @d
         AND NOT EXISTS (SELECT 1 FROM tags WHERE manifest = @d OR source = @d)
         AND NOT EXISTS (SELECT 1 FROM digest_refs WHERE manifest = @d OR digest = @d)
         AND NOT EXISTS (SELECT 1 FROM pins WHERE manifest = @d)`,
      { d: digest },
    );
  }

  // --- pins

  async putPin(pin: PinRecord) {
    this.#sql(
      `INSERT INTO pins (name, manifest, note, created_at, expires_at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (name) DO UPDATE SET manifest = excluded.manifest, note = excluded.note,
           created_at = excluded.created_at, expires_at = excluded.expires_at`,
    ).run(
      pin.name,
      pin.manifest,
      pin.note,
      ms(pin.createdAt),
      pin.expiresAt === undefined ? null : ms(pin.expiresAt),
    );
  }

  async deletePin(name: string) {
    const row = this.#sql<PinRow>('DELETE FROM pins WHERE name = ? RETURNING *').get(name);
    return row && toPin(row);
  }

  async listPins() {
    return this.#sql<PinRow>('SELECT * FROM pins ORDER BY name').all().map(toPin);
  }

  // --- garbage collection (each transition is one conditional statement, as in DynamoDB)

  async listBlobs() {
    return this.#sql<BlobRow>('SELECT * FROM blobs ORDER BY digest').all().map(toBlob);
  }

  /**
   * live -> deleting, only if nobody touched the blob since the collector read `generation`.
   * Answers false when a writer won (touched, re-added) or the record is gone or already deleting.
   */
  beginBlobDeletion(digest: Digest, expectedGeneration: number) {
    return this.#group.run(() => {
      return this.#statements.changedOne(
        `UPDATE blobs SET state = 'deleting'
         WHERE digest = ? AND state = 'live' AND generation = ?`,
        digest,
        expectedGeneration,
      );
    });
  }

  /** deleting -> gone, after the bytes were removed; a live record is never dropped here. */
  finishBlobDeletion(digest: Digest) {
    return this.#group.run(() => {
      this.#sql(`DELETE FROM blobs WHERE digest = ? AND state = 'deleting'`).run(digest);
    });
  }

  claimOrphanBlob(digest: Digest, size: number, now: number) {
    // A writer that recorded the blob meanwhile wins: DO NOTHING leaves its live record alone.
    return this.#group.run(() => {
      return this.#statements.changedOne(
        `INSERT INTO blobs (digest, size, unpacked_size, state, generation, touched_at)
       VALUES (?, ?, NULL, 'deleting', (SELECT value + 1 FROM blob_generation_floor), ?)
       ON CONFLICT (digest) DO NOTHING`,
        digest,
        size,
        ms(now),
      );
    });
  }
}
