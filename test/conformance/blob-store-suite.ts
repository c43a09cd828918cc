import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type Digest, sha256 } from '../../lib/digest.ts';
import { DigestMismatchError, InvalidArgumentError, NotFoundError } from '../../lib/errors.ts';
import type { BlobStore, ListedBlob } from '../../lib/ports/blob-store.ts';

export interface BlobStoreHarness {
  store: BlobStore;
  cleanup(): Promise<void>;
}

const MiB = 1024 * 1024;

/** Feeds `bytes` in small chunks so adapters see a real multi-chunk stream, not one buffer. */
export function chunked(bytes: Uint8Array, chunkSize = 64 * 1024): Readable {
  return Readable.from(
    (function* () {
      for (let i = 0; i < bytes.length; i += chunkSize) yield bytes.subarray(i, i + chunkSize);
    })(),
  );
}

/** A source that delivers `good` bytes and then fails, like a connection reset mid-layer. */
export function failingSource(good: Uint8Array, error: Error): Readable {
  return Readable.from(
    (async function* () {
      yield good;
      await new Promise((resolve) => setTimeout(resolve, 5));
      throw error;
    })(),
  );
}

export async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.from(chunk));
  return Buffer.concat(chunks);
}

export async function listAll(store: BlobStore): Promise<ListedBlob[]> {
  const out: ListedBlob[] = [];
  for await (const blob of store.list()) out.push(blob);
  return out;
}

/** Nothing may be visible under `digest` through any method (invariant 1 after a failure). */
async function expectAbsent(store: BlobStore, digest: Digest): Promise<void> {
  expect(await store.stat(digest)).toBeUndefined();
  await expect(store.read(digest)).rejects.toBeInstanceOf(NotFoundError);
  expect((await listAll(store)).map((b) => b.digest)).not.toContain(digest);
}

/**
 * The behaviour every BlobStore adapter must show (filesystem, S3, ...). `makeStore` gives a
 * fresh, empty store per test.
 */
export function blobStoreConformance(
  name: string,
  makeStore: () => Promise<BlobStoreHarness>,
): void {
  describe(`BlobStore conformance: ${name}`, () => {
    let harness: BlobStoreHarness;
    let store: BlobStore;
    beforeEach(async () => {
      harness = await makeStore();
      store = harness.store;
    });
    afterEach(async () => {
      await harness.cleanup();
    });

    it('writes with an expected digest and size, then stats and reads the same bytes', async () => {
      const bytes = randomBytes(300_000);
      const digest = sha256(bytes);
      const stored = await store.write(chunked(bytes), { digest, size: bytes.length });
      expect(stored).toEqual({ digest, size: bytes.length });
      expect(await store.stat(digest)).toEqual({ digest, size: bytes.length });
      expect((await readAll(await store.read(digest))).equals(bytes)).toBe(true);
    });

    it('stores under the computed digest when none is expected', async () => {
      const bytes = randomBytes(1000);
      const stored = await store.write(chunked(bytes, 100));
      expect(stored).toEqual({ digest: sha256(bytes), size: 1000 });
      expect((await readAll(await store.read(stored.digest))).equals(bytes)).toBe(true);
    });

    it('stores and reads an empty blob', async () => {
      const stored = await store.write(Readable.from([]), { size: 0 });
      expect(stored).toEqual({ digest: sha256(''), size: 0 });
      expect((await readAll(await store.read(stored.digest))).length).toBe(0);
    });

    it('is idempotent for equal content', async () => {
      const bytes = randomBytes(5000);
      const first = await store.write(chunked(bytes, 1000));
      const second = await store.write(chunked(bytes, 777), { digest: first.digest });
      expect(second).toEqual(first);
      expect((await listAll(store)).map((b) => b.digest)).toEqual([first.digest]);
      expect((await readAll(await store.read(first.digest))).equals(bytes)).toBe(true);
    });

    it('refuses bytes that do not hash to the expected digest and keeps nothing', async () => {
      const bytes = randomBytes(200_000);
      const claimed = sha256('something else');
      await expect(store.write(chunked(bytes), { digest: claimed })).rejects.toBeInstanceOf(
        DigestMismatchError,
      );
      await expectAbsent(store, claimed);
      await expectAbsent(store, sha256(bytes));
    });

    it.each([
      ['short', -1],
      ['long', +1],
    ])('refuses a %s body against the expected size and keeps nothing', async (_, delta) => {
      const bytes = randomBytes(100_000);
      const digest = sha256(bytes);
      const size = bytes.length - delta;
      await expect(store.write(chunked(bytes), { digest, size })).rejects.toBeInstanceOf(
        DigestMismatchError,
      );
      await expect(store.write(chunked(bytes), { size })).rejects.toBeInstanceOf(
        DigestMismatchError,
      );
      await expectAbsent(store, digest);
      expect(await listAll(store)).toEqual([]);
    });

    it('keeps nothing when the source fails halfway', async () => {
      const bytes = randomBytes(256 * 1024);
      const digest = sha256(bytes);
      const reset = new Error('ECONNRESET (test)');
      const source = failingSource(bytes.subarray(0, 100_000), reset);
      await expect(store.write(source, { digest, size: bytes.length })).rejects.toBe(reset);
      await expect(store.write(failingSource(bytes.subarray(0, 100_000), reset))).rejects.toBe(
        reset,
      );
      await expectAbsent(store, digest);
      expect(await listAll(store)).toEqual([]);
    });

    it('lets concurrent writers of the same blob all succeed with the right bytes', async () => {
      const bytes = randomBytes(4 * MiB);
      const digest = sha256(bytes);
      const results = await Promise.all(
        [16, 64, 256, 1024].map((kib) => store.write(chunked(bytes, kib * 1024), { digest })),
      );
      for (const result of results) expect(result).toEqual({ digest, size: bytes.length });
      expect((await readAll(await store.read(digest))).equals(bytes)).toBe(true);
      expect(await listAll(store)).toHaveLength(1);
    });

    it('serves byte ranges with an inclusive end', async () => {
      const bytes = randomBytes(10_000);
      const { digest } = await store.write(chunked(bytes, 999));
      const range = async (start: number, end?: number) =>
        readAll(await store.read(digest, end === undefined ? { start } : { start, end }));
      expect((await range(0, 0)).equals(bytes.subarray(0, 1))).toBe(true);
      expect((await range(100, 199)).equals(bytes.subarray(100, 200))).toBe(true);
      expect((await range(9_000)).equals(bytes.subarray(9_000))).toBe(true);
      expect((await range(9_999, 9_999)).equals(bytes.subarray(9_999))).toBe(true);
      // An end past the last byte is clamped, as HTTP Range is.
      expect((await range(9_990, 50_000)).equals(bytes.subarray(9_990))).toBe(true);
      await expect(store.read(digest, { start: 10_000 })).rejects.toBeInstanceOf(
        InvalidArgumentError,
      );
      await expect(store.read(digest, { start: 10, end: 5 })).rejects.toBeInstanceOf(
        InvalidArgumentError,
      );
      await expect(store.read(digest, { start: -1 })).rejects.toBeInstanceOf(InvalidArgumentError);
    });

    it('reports absent blobs as undefined (stat) and NotFoundError (read, ranged read)', async () => {
      const digest = sha256('never written');
      expect(await store.stat(digest)).toBeUndefined();
      await expect(store.read(digest)).rejects.toBeInstanceOf(NotFoundError);
      await expect(store.read(digest, { start: 0, end: 1 })).rejects.toBeInstanceOf(NotFoundError);
    });

    it('deletes idempotently', async () => {
      const { digest } = await store.write(chunked(randomBytes(1000)));
      const other = await store.write(chunked(randomBytes(1000)));
      await store.delete(digest);
      await expectAbsent(store, digest);
      await store.delete(digest);
      await store.delete(sha256('never written'));
      expect(await store.stat(other.digest)).toEqual(other);
    });

    it('lists every stored blob with its size and commit time', async () => {
      const before = Date.now();
      const stored = await Promise.all(
        [1, 10, 100_000].map((size) => store.write(chunked(randomBytes(size)))),
      );
      const after = Date.now();
      const listed = await listAll(store);
      const byDigest = (a: { digest: string }, b: { digest: string }) =>
        a.digest.localeCompare(b.digest);
      expect(listed.map(({ digest, size }) => ({ digest, size })).sort(byDigest)).toEqual(
        [...stored].sort(byDigest),
      );
      // Object stores keep whole seconds; allow that much slack either side.
      for (const blob of listed) {
        expect(blob.modifiedAt).toBeGreaterThanOrEqual(before - 2000);
        expect(blob.modifiedAt).toBeLessThanOrEqual(after + 2000);
      }
    });

    it('streams a 128 MiB blob in and out without holding it in memory', async () => {
      const total = 128 * MiB;
      const hash = createHash('sha256');
      // Peak of Buffer memory sampled while the bytes flow: a store that collects the chunks
      // (or reads the file whole) climbs by the blob's size; a streaming one stays near the
      // GC's external-memory threshold. Generous bound, no timing involved.
      const baseline = process.memoryUsage().arrayBuffers;
      let peak = 0;
      const sample = () => {
        peak = Math.max(peak, process.memoryUsage().arrayBuffers - baseline);
      };
      const source = Readable.from(
        (function* () {
          for (let sent = 0; sent < total; sent += MiB) {
            const chunk = randomBytes(MiB);
            hash.update(chunk);
            sample();
            yield chunk;
          }
        })(),
      );
      const stored = await store.write(source, { size: total });
      const digest = `sha256:${hash.digest('hex')}` as Digest;
      expect(stored).toEqual({ digest, size: total });

      const check = createHash('sha256');
      let read = 0;
      for await (const chunk of await store.read(digest)) {
        check.update(chunk);
        read += chunk.length;
        sample();
      }
      expect(read).toBe(total);
      expect(`sha256:${check.digest('hex')}`).toBe(digest);
      expect(peak).toBeLessThan(total / 2);
    });
  });
}
