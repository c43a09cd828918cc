/**
 * The load of an archive uploaded through presigned URLs: complete and open the upload, then
 * run the same streaming load as `POST /images/load`. The commit route runs it in the request
 * and removes the object whatever the outcome (`loadUploadedArchive`); the job runner opens and
 * loads the same way but removes the object only once the job's end is recorded, so a job
 * re-run after a lost finish still finds its archive.
 */
import type { Readable } from 'node:stream';
import type { PresignedUploads, UploadedPart } from '../ports/presigned-uploads.ts';
import { type LoadDeps, type LoadResult, loadArchive } from './load.ts';
import type { LoadLimits } from './tar-reader.ts';

export async function loadUploadedArchive(
  uploads: PresignedUploads,
  id: string,
  parts: UploadedPart[] | undefined,
  deps: LoadDeps,
  limits: LoadLimits,
  onProgress?: (bytes: number) => void,
): Promise<LoadResult> {
  // An upload that does not open (wrong parts, unfinished) stays, so the client can commit
  // again with the right parts; once opened, it is removed whatever the load's outcome.
  const body = await uploads.openUpload(id, parts);
  try {
    return await loadOpenedUpload(body, deps, limits, onProgress);
  } finally {
    await discardUpload(uploads, id);
  }
}

/** Loads an opened upload and closes it; the object stays for the caller to discard. */
export async function loadOpenedUpload(
  body: Readable,
  deps: LoadDeps,
  limits: LoadLimits,
  onProgress?: (bytes: number) => void,
): Promise<LoadResult> {
  try {
    return await loadArchive(body, deps, {
      limits,
      ...(onProgress && { onProgress }),
    });
  } finally {
    body.destroy();
  }
}

/** Removes the uploaded object; a failure is logged, not thrown (the load's outcome stands). */
export async function discardUpload(uploads: PresignedUploads, id: string): Promise<void> {
  await uploads.discardUpload(id).catch((error: unknown) => {
    console.error(`discarding upload ${id}:`, error);
  });
}
