/**
 * The load of an archive uploaded through presigned URLs: complete and open the upload, run
 * the same streaming load as `POST /images/load`, and remove the object whatever the outcome.
 * The commit route runs it in the request; the job runner runs it in a worker.
 */
import type { PresignedUploads, UploadedPart } from '../ports/presigned-uploads.ts';
import { type LoadDeps, type LoadResult, loadArchive } from './load.ts';
import { loadLimitsFromEnv } from './tar-reader.ts';

export async function loadUploadedArchive(
  uploads: PresignedUploads,
  id: string,
  parts: UploadedPart[] | undefined,
  deps: LoadDeps,
  onProgress?: (bytes: number) => void,
): Promise<LoadResult> {
  // An upload that does not open (wrong parts, unfinished) stays, so the client can commit
  // again with the right parts; once opened, it is removed whatever the load's outcome.
  const body = await uploads.openUpload(id, parts);
  try {
    return await loadArchive(body, deps, {
      limits: loadLimitsFromEnv(process.env),
      ...(onProgress && { onProgress }),
    });
  } finally {
    body.destroy();
    await uploads.discardUpload(id).catch((error: unknown) => {
      console.error(`discarding upload ${id}:`, error);
    });
  }
}
