import { ROUTE_SCOPES } from '../auth/scopes.ts';
import { ImageCacheError } from '../errors.ts';
import { exportSave, type SaveExport, type SaveExports, wantsRedirect } from '../save/export.ts';
import { prepareSave } from '../save/save.ts';
import type { EngineContext } from './context.ts';
import { type HttpRequest, type HttpResponse, json } from './http.ts';
import { exportBody, exportThroughJob } from './job-export.ts';
import type { Route } from './router.ts';
import { pullMissing, pullsMissing } from './save-pull.ts';

async function save(
  names: string[],
  request: HttpRequest,
  context: EngineContext,
): Promise<HttpResponse> {
  const started = performance.now();
  if (pullsMissing(request.query)) {
    const handedOver = await pullMissing(request, names, context);
    if (handedOver) return handedOver;
  }
  // A redirect only for clients that asked (the docker CLI refuses them) and backends that can.
  if (context.exports && wantsRedirect(request.query, request.headers)) {
    return exported(names, request, context, context.exports, (ready) => {
      // Served from storage, as the registry door's redirects to blobs are counted.
      context.metrics.bytesServed('engine', ready.size);
      context.metrics.duration('save', (performance.now() - started) / 1000);
      return { status: 307, headers: { Location: ready.url, 'Cache-Control': 'no-store' } };
    });
  }
  const tarball = await prepareSave(context, names);
  const body = tarball.open();
  // Counted once the last byte left: a save cut short served less and did not finish.
  body.once('end', () => {
    context.metrics.bytesServed('engine', tarball.contentLength);
    context.metrics.duration('save', (performance.now() - started) / 1000);
  });
  return {
    status: 200,
    headers: {
      'Content-Type': 'application/x-tar',
      'Content-Length': String(tarball.contentLength),
    },
    body,
  };
}

/**
 * The save's export answered by `answer`: written in the request where there is no deadline
 * (the Node server), else by a job the request follows until its deadline nears (202 then).
 */
async function exported(
  names: string[],
  request: HttpRequest,
  context: EngineContext,
  exports: SaveExports,
  answer: (ready: SaveExport) => HttpResponse,
): Promise<HttpResponse> {
  const { deadline } = request;
  const { jobs } = context;
  if (deadline !== undefined && jobs) {
    return exportThroughJob({ ...request, deadline }, names, context, { exports, jobs }, answer);
  }
  const { catalog, blobs, clock } = context;
  return answer(await exportSave({ catalog, blobs, clock, exports }, names));
}

/**
 * `docker save`: one image by path, or several as repeated `names` query parameters; with
 * `redirect=1` (or `X-Image-Cache-Redirect: 1`) a 307 to the tarball exported to storage.
 * `GET /cache/exports?names=...` answers that export's URL as JSON instead. With `pull=missing`
 * (scope write) what is not cached, or whose tag is stale, is pulled first (save-pull.ts).
 */
export const saveRoutes: Route[] = [
  {
    method: 'GET',
    pattern: /^\/images\/get$/,
    scope: ROUTE_SCOPES['GET /images/get'],
    scopeFor: (query) =>
      query.has('pull') ? ROUTE_SCOPES['GET /images/get?pull=missing'] : undefined,
    handler: (request, _params, context) => save(request.query.getAll('names'), request, context),
  },
  {
    method: 'GET',
    pattern: /^\/images\/(.+)\/get$/,
    scope: ROUTE_SCOPES['GET /images/{name}/get'],
    scopeFor: (query) =>
      query.has('pull') ? ROUTE_SCOPES['GET /images/{name}/get?pull=missing'] : undefined,
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
      return exported(request.query.getAll('names'), request, context, context.exports, (ready) =>
        json(200, exportBody(ready), { 'Cache-Control': 'no-store' }),
      );
    },
  },
];
