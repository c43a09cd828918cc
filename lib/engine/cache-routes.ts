import { ROUTE_SCOPES } from '../auth/scopes.ts';
import { json } from './http.ts';
import type { Route } from './router.ts';

/** What Docker has no word for lives under /cache. */
export const cacheRoutes: Route[] = [
  {
    // The allow-list and the rate limits each registry last reported (Docker Hub's pull quota).
    method: 'GET',
    pattern: /^\/cache\/registries$/,
    scope: ROUTE_SCOPES['GET /cache/registries'],
    handler: (_request, _params, context) =>
      json(
        200,
        [...context.registries].map(([name, url]) => ({
          Name: name,
          URL: url.origin,
          RateLimit: context.upstream.rateLimit(name) ?? null,
        })),
      ),
  },
];
