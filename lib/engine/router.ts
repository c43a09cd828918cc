import { NotFoundError } from '../errors.ts';
import { splitVersion } from './api-version.ts';
import { cacheRoutes } from './cache-routes.ts';
import type { EngineContext } from './context.ts';
import { gcRoutes } from './gc-routes.ts';
import { errorResponse, type HttpRequest, type HttpResponse } from './http.ts';
import { imageRoutes } from './image-routes.ts';
import { loadRoutes } from './load-routes.ts';
import { removalRoutes } from './removal-routes.ts';
import { saveRoutes } from './save-routes.ts';
import { systemRoutes } from './system-routes.ts';

export type RouteHandler = (
  request: HttpRequest,
  params: string[],
  context: EngineContext,
) => Promise<HttpResponse> | HttpResponse;

export interface Route {
  method: string | string[];
  /** Matched against the decoded path without the version prefix; groups become params. */
  pattern: RegExp;
  handler: RouteHandler;
}

/**
 * Dispatches Engine API requests. Names in paths may contain slashes
 * (`/images/localhost:5000/team/app:1/json`), so fixed routes come first and named routes
 * anchor on their suffix.
 */
export function createRouter(context: EngineContext) {
  const routes: Route[] = [
    ...systemRoutes,
    ...saveRoutes,
    ...loadRoutes,
    ...imageRoutes,
    ...removalRoutes,
    ...cacheRoutes,
    ...gcRoutes,
  ];
  return async function handle(request: HttpRequest): Promise<HttpResponse> {
    try {
      const { version, path } = splitVersion(request.path);
      const routed: HttpRequest = { ...request, path, apiVersion: version };
      const decoded = decodeURIComponent(path);
      for (const route of routes) {
        const methods = Array.isArray(route.method) ? route.method : [route.method];
        if (!methods.includes(request.method)) continue;
        const match = route.pattern.exec(decoded);
        if (match) return await route.handler(routed, match.slice(1), context);
      }
      throw new NotFoundError('page not found');
    } catch (error) {
      if (!(error instanceof Error && 'code' in error)) console.error(error);
      return errorResponse(error);
    }
  };
}

export type Router = ReturnType<typeof createRouter>;
