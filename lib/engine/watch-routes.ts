/**
 * Watched references (issue 15): `PUT /cache/watch/{name}?every=&platform=&pin=` adds or
 * changes a watch, `DELETE /cache/watch/{name}` removes it (and the pins it kept), and
 * `GET /cache/watch` lists them with each one's last check, last change, next check and last
 * error, and each registry's background budget and pause. The checks themselves run on the
 * schedule (lib/watch/watcher.ts), never in a request.
 */
import { ROUTE_SCOPES } from '../auth/scopes.ts';
import { NotFoundError } from '../errors.ts';
import { jobPath } from '../jobs/job-view.ts';
import { deleteWatch, listWatches, putWatch, type WatchServiceDeps } from '../watch/watches.ts';
import type { EngineContext } from './context.ts';
import { json } from './http.ts';
import type { Route } from './router.ts';

export const watchRoutes: Route[] = [
  {
    method: 'GET',
    pattern: /^\/cache\/watch$/,
    scope: ROUTE_SCOPES['GET /cache/watch'],
    handler: async (_request, _params, context) => json(200, await listWatches(serviceOf(context))),
  },
  {
    method: 'PUT',
    pattern: /^\/cache\/watch\/(.+)$/,
    scope: ROUTE_SCOPES['PUT /cache/watch/{name}'],
    handler: async (request, [name], context) => {
      const { watch, created, pulls } = await putWatch(serviceOf(context), name!, request.query);
      return json(created ? 201 : 200, {
        ...watch,
        pulls: pulls.map((pull) => ({ ...pull, url: jobPath(pull.id) })),
      });
    },
  },
  {
    method: 'DELETE',
    pattern: /^\/cache\/watch\/(.+)$/,
    scope: ROUTE_SCOPES['DELETE /cache/watch/{name}'],
    handler: async (_request, [name], context) => {
      await deleteWatch(serviceOf(context), name!);
      return { status: 204 };
    },
  },
];

function serviceOf(context: EngineContext): WatchServiceDeps {
  if (!context.watch) throw new NotFoundError('this server keeps no watches');
  return {
    watches: context.watches,
    catalog: context.catalog,
    jobStore: context.jobStore,
    clock: context.clock,
    registries: context.registries,
    limits: context.watch.limits,
    budgets: context.watch.budgets,
    ...(context.jobs && { jobs: context.jobs }),
  };
}
