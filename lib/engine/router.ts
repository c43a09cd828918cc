import { type RouteScope, UNMATCHED_SCOPE } from '../auth/scopes.ts';
import { InvalidArgumentError, NotFoundError } from '../errors.ts';
import { createRegistryDoor, isRegistryPath } from '../mirror/registry-door.ts';
import { splitVersion } from './api-version.ts';
import { cacheRoutes } from './cache-routes.ts';
import type { EngineContext } from './context.ts';
import { gcRoutes } from './gc-routes.ts';
import {
  answeredFor,
  type Caller,
  callerOf,
  errorResponse,
  type HttpRequest,
  type HttpResponse,
} from './http.ts';
import { imageRoutes } from './image-routes.ts';
import { imageUsageRoutes } from './image-usage-routes.ts';
import { jobRoutes } from './job-routes.ts';
import { loadRoutes } from './load-routes.ts';
import { metricsRoutes, routeFamily } from './metrics-routes.ts';
import { refusalResponse } from './refusal.ts';
import { removalRoutes } from './removal-routes.ts';
import { saveRoutes } from './save-routes.ts';
import { systemRoutes } from './system-routes.ts';
import { uiRoutes } from './ui-routes.ts';
import { uploadRoutes } from './upload-routes.ts';
import { warmRoutes } from './warm-routes.ts';
import { watchRoutes } from './watch-routes.ts';

export type RouteHandler = (
  request: HttpRequest,
  params: string[],
  context: EngineContext,
) => Promise<HttpResponse> | HttpResponse;

export interface Route {
  method: string | string[];
  /** Matched against the decoded path without the version prefix; groups become params. */
  pattern: RegExp;
  /** What a token needs to call this route (lib/auth/scopes.ts); checked before the handler. */
  scope: RouteScope;
  /**
   * The scope instead, when the query asks for more than the route's plain form does (a save
   * that pulls what is missing writes); checked before the handler like `scope`.
   */
  scopeFor?: (query: URLSearchParams) => RouteScope | undefined;
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
    ...uploadRoutes,
    ...imageRoutes,
    ...removalRoutes,
    ...cacheRoutes,
    ...imageUsageRoutes,
    ...gcRoutes,
    ...jobRoutes,
    ...warmRoutes,
    ...watchRoutes,
    ...uiRoutes,
    ...metricsRoutes,
  ];
  // The OCI registry API lives under /v2/, with its own errors and challenge.
  const registryDoor = createRegistryDoor(context);
  async function handle(request: HttpRequest): Promise<HttpResponse> {
    const response = await answer(request);
    context.metrics.request(routeFamily(request.method, request.path), response.status);
    return response;
  }
  async function answer(request: HttpRequest): Promise<HttpResponse> {
    if (isRegistryPath(request.path)) return registryDoor(request);
    // Known once the token is checked; the answer carries it, failures included, for the log.
    let caller: Caller | undefined;
    try {
      const { version, path } = splitVersion(request.path);
      const routed: HttpRequest = { ...request, path, apiVersion: version };
      const decoded = decodePath(path);
      // Before any handler runs, so a refused request changes nothing and reads nothing.
      const authorize = async (scope: RouteScope) => {
        caller = callerOf(
          await context.auth?.authorize(
            request.headers.authorization,
            scope,
            `${request.method} ${decoded}`,
          ),
        );
      };
      for (const route of routes) {
        const methods = Array.isArray(route.method) ? route.method : [route.method];
        if (!methods.includes(request.method)) continue;
        const match = route.pattern.exec(decoded);
        if (!match) continue;
        await authorize(route.scopeFor?.(request.query) ?? route.scope);
        return answeredFor(await route.handler(routed, match.slice(1), context), caller);
      }
      await authorize(UNMATCHED_SCOPE);
      throw new NotFoundError('page not found');
    } catch (error) {
      // errorResponse logs what is the server's fault, once.
      return answeredFor(refusalResponse(error, request) ?? errorResponse(error), caller);
    }
  }
  // The routes in matching order, for the test that every one declares a scope.
  return Object.assign(handle, { routes: routes as readonly Route[] });
}

export type Router = ReturnType<typeof createRouter>;

/** `%ff` or a lone `%` is the client's mistake: a 400 before any route or token is looked at. */
function decodePath(path: string): string {
  try {
    return decodeURIComponent(path);
  } catch {
    throw new InvalidArgumentError('malformed percent-encoding in the request path');
  }
}
