/**
 * Load through storage, for archives past the front door's request limit (API Gateway takes
 * 10 MB): `POST /cache/loads?size=N` hands out presigned upload URLs (one PUT, or one per part
 * of a multipart upload), the client uploads straight to the bucket, then
 * `POST /cache/loads/<id>/commit` completes the upload and runs the same streaming load as
 * `POST /images/load`, reading the object, and answers as it does. The object is removed after
 * the load, whatever its outcome. Only backends with presigned uploads (S3) offer it.
 */
import { ROUTE_SCOPES } from '../auth/scopes.ts';
import { InvalidArgumentError, NotFoundError } from '../errors.ts';
import { loadUploadedArchive } from '../load/from-upload.ts';
import { PayloadTooLargeError } from '../load/tar-reader.ts';
import {
  type PresignedUploads,
  presignedUploadsOf,
  type UploadedPart,
} from '../ports/presigned-uploads.ts';
import type { EngineContext } from './context.ts';
import { json, readSmallBody } from './http.ts';
import { loadThroughJob } from './job-load.ts';
import { loadedResponse } from './load-answers.ts';
import type { Route } from './router.ts';

const MAX_COMMIT_BODY = 1024 * 1024;

function uploadsOf(context: EngineContext): PresignedUploads {
  const uploads = presignedUploadsOf(context.blobs);
  if (!uploads) {
    throw new NotFoundError(
      'this server has no presigned uploads (only the S3 backend does): POST the archive to ' +
        '/images/load directly',
    );
  }
  return uploads;
}

export const uploadRoutes: Route[] = [
  {
    method: 'POST',
    pattern: /^\/cache\/loads$/,
    scope: ROUTE_SCOPES['POST /cache/loads'],
    handler: async (request, _params, context) => {
      const uploads = uploadsOf(context);
      const raw = request.query.get('size') ?? '';
      const size = /^\d{1,16}$/.test(raw) ? Number(raw) : Number.NaN;
      if (!Number.isSafeInteger(size) || size <= 0) {
        throw new InvalidArgumentError('size=N is required: the archive length in bytes');
      }
      const limit = context.loadLimits.maxBodyBytes;
      if (size > limit) throw new PayloadTooLargeError(limit);
      request.body?.resume();
      const ticket = await uploads.createUpload(size);
      const commit = `/cache/loads/${ticket.id}/commit`;
      const shape = ticket.kind === 'single' ? { url: ticket.url } : { parts: ticket.parts };
      return json(201, {
        id: ticket.id,
        ...shape,
        partSize: ticket.partSize,
        expiresIn: ticket.expiresIn,
        commit,
      });
    },
  },
  {
    method: 'POST',
    pattern: /^\/cache\/loads\/([^/]+)\/commit$/,
    scope: ROUTE_SCOPES['POST /cache/loads/{id}/commit'],
    handler: async (request, [id], context) => {
      const uploads = uploadsOf(context);
      const parts = parseParts(await readSmallBody(request.body, MAX_COMMIT_BODY));
      const { deadline } = request;
      if (deadline !== undefined && context.jobs) {
        // Completed here, so a wrong part list is still this request's 400, and the job carries
        // one short id instead of the parts.
        const completed = await uploads.completeUpload(id!, parts);
        return loadThroughJob({ ...request, deadline }, context, context.jobs, completed);
      }
      const result = await loadUploadedArchive(
        uploads,
        id!,
        parts,
        { catalog: context.catalog, blobs: context.blobs, clock: context.clock },
        context.loadLimits,
      );
      return loadedResponse(result.messages);
    },
  },
];

/** `{"parts":[{"number":1,"etag":"\"...\""}]}`; an empty body for a single-PUT upload. */
function parseParts(text: string): UploadedPart[] | undefined {
  if (text.trim() === '') return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new InvalidArgumentError(
      'the commit body is not JSON: send {"parts":[{"number","etag"}]}',
    );
  }
  const parts = (value as { parts?: unknown } | null)?.parts;
  if (parts === undefined) return undefined;
  if (!Array.isArray(parts) || parts.length > 10_000) {
    throw new InvalidArgumentError('"parts" must be a list of {"number","etag"}');
  }
  const seen = new Set<number>();
  return parts.map((part: unknown) => {
    const { number, etag } = (part ?? {}) as { number?: unknown; etag?: unknown };
    if (
      typeof number !== 'number' ||
      !Number.isInteger(number) ||
      number < 1 ||
      number > 10_000 ||
      seen.has(number) ||
      typeof etag !== 'string' ||
      etag === '' ||
      etag.length > 256
    ) {
      throw new InvalidArgumentError('"parts" must be a list of {"number","etag"}, one per part');
    }
    seen.add(number);
    return { number, etag };
  });
}
