import { ROUTE_SCOPES } from '../auth/scopes.ts';
import { prepareSave } from '../save/save.ts';
import type { EngineContext } from './context.ts';
import type { HttpResponse } from './http.ts';
import type { Route } from './router.ts';

async function save(names: string[], context: EngineContext): Promise<HttpResponse> {
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

/** `docker save`: one image by path, or several as repeated `names` query parameters. */
export const saveRoutes: Route[] = [
  {
    method: 'GET',
    pattern: /^\/images\/get$/,
    scope: ROUTE_SCOPES['GET /images/get'],
    handler: (request, _params, context) => save(request.query.getAll('names'), context),
  },
  {
    method: 'GET',
    pattern: /^\/images\/(.+)\/get$/,
    scope: ROUTE_SCOPES['GET /images/{name}/get'],
    handler: (_request, [name], context) => save([name!], context),
  },
];
