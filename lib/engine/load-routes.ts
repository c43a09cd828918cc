import { ROUTE_SCOPES } from '../auth/scopes.ts';
import { InvalidArgumentError } from '../errors.ts';
import { loadArchive } from '../load/load.ts';
import { PayloadTooLargeError } from '../load/tar-reader.ts';
import { presignedUploadsOf } from '../ports/presigned-uploads.ts';
import type { EngineContext } from './context.ts';
import { errorResponse, type HttpResponse } from './http.ts';
import { loadedResponse } from './load-answers.ts';
import type { Route } from './router.ts';

/**
 * `POST /images/load` (docker load). The status is held until the whole archive was read and
 * checked, so every failure (hostile or broken tarball) is a 4xx with `{"message"}` and nothing
 * tagged; success answers with Docker's `{"stream": "Loaded image: ..."}` lines.
 */
export const loadRoutes: Route[] = [
  {
    method: 'POST',
    pattern: /^\/images\/load$/,
    scope: ROUTE_SCOPES['POST /images/load'],
    handler: async (request, _params, context): Promise<HttpResponse> => {
      const limits = context.loadLimits;
      const body = request.body;
      if (!body) throw new InvalidArgumentError('the request has no body: send a tar archive');
      const declared = Number(request.headers['content-length'] ?? Number.NaN);
      if (Number.isFinite(declared) && declared > limits.maxBodyBytes) {
        // Reading a body we refuse would only waste the bandwidth; close after answering.
        return {
          ...errorResponse(tooLarge(limits.maxBodyBytes, context)),
          headers: closeHeaders,
        };
      }
      try {
        const started = performance.now();
        const result = await loadArchive(
          body,
          { catalog: context.catalog, blobs: context.blobs, clock: context.clock },
          { limits },
        );
        context.metrics.duration('load', (performance.now() - started) / 1000);
        return loadedResponse(result.messages);
      } catch (error) {
        if (error instanceof PayloadTooLargeError) {
          return {
            ...errorResponse(tooLarge(limits.maxBodyBytes, context)),
            headers: closeHeaders,
          };
        }
        // Let the client finish sending so it reads our answer instead of a reset.
        if (!body.readableEnded) body.resume();
        throw error;
      }
    },
  },
];

/** The 413, naming the presigned path where the backend has one (S3 behind API Gateway). */
function tooLarge(limit: number, context: EngineContext): PayloadTooLargeError {
  const error = new PayloadTooLargeError(limit);
  if (presignedUploadsOf(context.blobs)) error.message += `; ${PRESIGNED_LOAD_HINT}`;
  return error;
}

export const PRESIGNED_LOAD_HINT =
  'large archives load through S3: POST /cache/loads?size=<bytes> for presigned upload URLs, ' +
  'then POST /cache/loads/<id>/commit (`image-cache load -i FILE` does this by itself)';

const closeHeaders = { 'Content-Type': 'application/json', Connection: 'close' };
