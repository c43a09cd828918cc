import type { Digest } from './digest.ts';
import { ImageCacheError } from './errors.ts';
import type { ImageCatalog } from './ports/image-catalog.ts';

/**
 * A writer that finds a blob in state `deleting` treats it as absent, but may store it again
 * only once the collector finished (the collector is about to delete whatever is at the key).
 * Polls the record with backoff until it is gone or live again.
 */
export async function waitForDeletion(
  catalog: ImageCatalog,
  digest: Digest,
  timeoutMs = 60_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let delay = 20;
  while (Date.now() < deadline) {
    const record = await catalog.getBlob(digest);
    if (record?.state !== 'deleting') return;
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 500);
  }
  throw new ImageCacheError(
    'BLOB_NOT_LIVE',
    `blob ${digest} is still being deleted by the garbage collector; try again later`,
  );
}
