import { ROUTE_SCOPES } from '../auth/scopes.ts';
import { registryCredentialStates } from '../registry/anonymous-registries.ts';
import { json } from './http.ts';
import type { Route } from './router.ts';

/** What Docker has no word for lives under /cache. */
export const cacheRoutes: Route[] = [
  {
    // The allow-list, the rate limits each registry last reported (Docker Hub's pull quota),
    // and which registries are pulled anonymously.
    method: 'GET',
    pattern: /^\/cache\/registries$/,
    scope: ROUTE_SCOPES['GET /cache/registries'],
    handler: async (_request, _params, context) => {
      const states = await registryCredentialStates(context.registries, context.credentials);
      return json(
        200,
        [...context.registries].map(([name, url]) => ({
          Name: name,
          URL: url.origin,
          RateLimit: context.upstream.rateLimit(name) ?? null,
          ...states.get(name),
        })),
      );
    },
  },
];
