import { ROUTE_SCOPES } from '../auth/scopes.ts';
import { ImageCacheError } from '../errors.ts';
import { exportSave, type SaveExport, type SaveExports, wantsRedirect } from '../save/export.ts';
import { prepareSave } from '../save/save.ts';
import type { EngineContext } from './context.ts';
import { type HttpRequest, type HttpResponse, json } from './http.ts';
import type { Route } from './router.ts';

async function save(
  names: string[],
  request: HttpRequest,
  context: EngineContext,
): Promise<HttpResponse> {
  // A redirect only for clients that asked (the docker CLI refuses them) and backends that can.
  if (context.exports && wantsRedirect(request.query, request.headers)) {
    const exported = await exportSave(withExports(context, context.exports), names);
    return {
      status: 307,
      headers: { Location: exported.url, 'Cache-Control': 'no-store' },
    };
  }
  const tarball = await prepareSave(context, names);
  return {
    status: 200,
    headers: {
      'Content-Type': 'application/x-tar',
      'Content-Length': String(tarball.contentLength),
    },
    body: tarball.open(),
  };
}

function withExports(context: EngineContext, exports: SaveExports) {
  return { catalog: context.catalog, blobs: context.blobs, clock: context.clock, exports };
}

function exportBody(exported: SaveExport) {
  return { url: exported.url, size: exported.size, expires: exported.expires.toISOString() };
}

/**
 * `docker save`: one image by path, or several as repeated `names` query parameters; with
 * `redirect=1` (or `X-Image-Cache-Redirect: 1`) a 307 to the tarball exported to storage.
 * `GET /cache/exports?names=...` answers that export's URL as JSON instead.
 */
export const saveRoutes: Route[] = [
  {
    method: 'GET',
    pattern: /^\/images\/get$/,
    scope: ROUTE_SCOPES['GET /images/get'],
    handler: (request, _params, context) => save(request.query.getAll('names'), request, context),
  },
  {
    method: 'GET',
    pattern: /^\/images\/(.+)\/get$/,
    scope: ROUTE_SCOPES['GET /images/{name}/get'],
    handler: (request, [name], context) => save([name!], request, context),
  },
  {
    method: 'GET',
    pattern: /^\/cache\/exports$/,
    scope: ROUTE_SCOPES['GET /cache/exports'],
    handler: async (request, _params, context) => {
      if (!context.exports) {
        throw new ImageCacheError(
          'NOT_FOUND',
          'this backend has no save exports (the AWS backend has): use GET /images/get',
        );
      }
      const exported = await exportSave(
        withExports(context, context.exports),
        request.query.getAll('names'),
      );
      return json(200, exportBody(exported), { 'Cache-Control': 'no-store' });
    },
  },
];
