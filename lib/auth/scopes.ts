/**
 * Token scopes and the one table that says which scope each endpoint needs. Scopes are
 * hierarchical: a token holds its own scope and every scope below it.
 */

import { SCOPES, type Scope } from '../model.ts';

export { SCOPES, type Scope };

/** What a route needs: a scope, or nothing at all (`open`: version negotiation must work first). */
export type RouteScope = Scope | 'open';

export function isScope(value: string): value is Scope {
  return (SCOPES as readonly string[]).includes(value);
}

/** Whether a token of scope `granted` may call an endpoint that needs `needed`. */
export function allows(granted: Scope, needed: RouteScope): boolean {
  return needed === 'open' || SCOPES.indexOf(granted) >= SCOPES.indexOf(needed);
}

/**
 * Every endpoint, by method and path shape, with the scope it needs. Routes declare their scope
 * from here (`scope: ROUTE_SCOPES['DELETE /images/{name}']`), so this is the table to review.
 * `docker` pings and asks for the version before anything else, unauthenticated, to negotiate the
 * API version; those two stay open so it gets far enough to send its configured headers.
 */
export const ROUTE_SCOPES = {
  'GET /_ping': 'open',
  'GET /version': 'open',

  'GET /images/json': 'read',
  'GET /images/{name}/json': 'read',
  'GET /images/{name}/history': 'read',
  'GET /images/get': 'read',
  'GET /images/{name}/get': 'read',
  'GET /cache/registries': 'read',
  'GET /cache/images': 'read',
  // The dashboard's page, stylesheet and script hold no data: the page asks for a token itself.
  'GET /cache/ui/': 'open',
  'GET /cache/pins': 'read',
  'GET /cache/gc': 'read',
  'GET /cache/stats': 'read',
  'GET /cache/exports': 'read',
  'GET /cache/jobs': 'read',
  'GET /cache/jobs/{id}': 'read',
  'GET /cache/watch': 'read',
  'GET /metrics': 'read',

  'POST /images/create': 'pull',

  // The registry door (lib/mirror/): any of its reads needs a token; fetching what is not
  // cached yet from the upstream needs pull.
  'GET|HEAD /v2/*': 'read',
  'GET|HEAD /v2/* (from upstream)': 'pull',

  'POST /images/load': 'write',
  // A save that pulls what is not cached first (lib/engine/save-pull.ts) writes.
  'GET /images/get?pull=missing': 'write',
  'GET /images/{name}/get?pull=missing': 'write',
  'POST /cache/loads': 'write',
  'POST /cache/loads/{id}/commit': 'write',
  'POST /images/{name}/tag': 'write',
  'DELETE /images/{name}': 'write',
  'PUT /cache/pins/{name}': 'write',
  'DELETE /cache/pins/{name}': 'write',
  'POST /cache/warm': 'write',
  'PUT /cache/watch/{name}': 'write',
  'DELETE /cache/watch/{name}': 'write',

  'POST /images/prune': 'admin',
  'POST /cache/gc': 'admin',
  'POST /cache/retention': 'admin',
} as const satisfies Record<string, RouteScope>;

/** Paths no route matches still need a token: an unknown path is not an open door. */
export const UNMATCHED_SCOPE: RouteScope = 'read';
