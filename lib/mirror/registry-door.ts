import { ForbiddenError, UnauthorizedError } from '../auth/access.ts';
import { allows, ROUTE_SCOPES } from '../auth/scopes.ts';
import type { EngineContext } from '../engine/context.ts';
import {
  answeredFor,
  type Caller,
  callerOf,
  type HttpRequest,
  type HttpResponse,
} from '../engine/http.ts';
import { InvalidArgumentError } from '../errors.ts';
import type { TokenRecord } from '../ports/token-store.ts';
import { serveBlob } from './blob-answers.ts';
import { serveReferrers, serveTags } from './listing-answers.ts';
import { serveManifest } from './manifest-answers.ts';
import { OciError, type OciSubject, ociErrorResponse } from './oci-errors.ts';
import { parseRegistryPath, type RegistryPath } from './registry-path.ts';

/**
 * The OCI distribution (registry) API, read side, next to the Engine API on the same server
 * and Lambda fronts: Docker daemons, containerd (Kubernetes nodes), BuildKit, podman and skopeo
 * use the cache as their registry or mirror. It serves the same catalog the Engine API does:
 * what they pull through it is pulled, stored and tagged like any `docker pull` of the cache.
 */

export interface RegistryDoorSettings {
  /** Answer stored blobs with a 307 to a presigned storage URL (S3) where the store can. */
  redirectBlobs: boolean;
  /** How long such a URL lives. */
  redirectSeconds: number;
}

/** The registry door uses the Engine API's context: one catalog, one pull path. */
export type MirrorContext = EngineContext;

/** What a handler knows about the request beyond its path. */
export interface DoorRequest {
  request: HttpRequest;
  target: Exclude<RegistryPath, { kind: 'base' } | { kind: 'token' }>;
  /** Whether the token may fetch from upstream (a `read` token sees what is cached only). */
  mayPull: boolean;
  /** The name as the client wrote it (for tag lists and Link headers). */
  name: string;
}

const API_VERSION = { 'Docker-Distribution-API-Version': 'registry/2.0' };
const SERVICE = 'image-cache';

export function isRegistryPath(path: string): boolean {
  return path === '/v2' || path.startsWith('/v2/');
}

export function createRegistryDoor(context: MirrorContext) {
  return async function registryDoor(request: HttpRequest): Promise<HttpResponse> {
    let subject: OciSubject = 'repository';
    let namespace: string | undefined;
    // Who asked, for the front door's request log (the router's answers carry it too).
    let caller: Caller | undefined;
    try {
      const path = decodePath(request.path);
      if (path === '/v2/token') return await issueToken(request, context);
      const token = await authenticate(request, context);
      caller = callerOf(token);
      if (request.method !== 'GET' && request.method !== 'HEAD') {
        throw new OciError(
          'UNSUPPORTED',
          405,
          'this registry is a read-only cache: push and delete are not supported',
        );
      }
      const target = parseRegistryPath(path, request.query, context.registries);
      if (!target) throw new OciError('NAME_UNKNOWN', 404, `no such registry endpoint: ${path}`);
      if (target.kind === 'base' || target.kind === 'token') {
        return answeredFor(
          withHeaders({
            status: 200,
            headers: { 'Content-Type': 'application/json' },
            body: '{}\n',
          }),
          caller,
        );
      }
      namespace = target.namespace;
      subject =
        target.kind === 'manifests' ? 'manifest' : target.kind === 'blobs' ? 'blob' : 'repository';
      const door: DoorRequest = {
        request,
        target,
        mayPull: !token || allows(token.scope, ROUTE_SCOPES['GET|HEAD /v2/* (from upstream)']),
        name: path
          .replace(/^\/v2\//, '')
          .replace(/\/(manifests|blobs|referrers)\/[^/]+$|\/tags\/list$/, ''),
      };
      const answer =
        target.kind === 'manifests'
          ? await serveManifest(door, context)
          : target.kind === 'blobs'
            ? await serveBlob(door, context)
            : target.kind === 'tags'
              ? await serveTags(door, context)
              : await serveReferrers(door, context);
      return answeredFor(withHeaders(answer, namespace), caller);
    } catch (error) {
      const response = ociErrorResponse(error, subject);
      if (
        error instanceof UnauthorizedError ||
        (error instanceof OciError && error.status === 401)
      ) {
        response.headers = { ...response.headers, 'WWW-Authenticate': challenge(request) };
      }
      // A refused upload is not read; the server closes the connection after answering.
      return answeredFor(withHeaders(response, namespace), caller);
    }
  };
}

/** Every answer says which API it speaks, and which registry `ns` named. */
function withHeaders(response: HttpResponse, namespace?: string): HttpResponse {
  return {
    ...response,
    headers: {
      ...API_VERSION,
      ...response.headers,
      ...(namespace !== undefined && { 'OCI-Namespace': namespace }),
    },
  };
}

/**
 * The token a client presents: a bearer `ic_` token (containerd `hosts.toml` headers, after
 * our token endpoint), or Basic with the token as the password (`docker login -p ic_...`).
 * Never forwarded anywhere: daemons send their Docker Hub credentials to mirrors too.
 */
function presentedToken(authorization: string | undefined): string | undefined {
  if (!authorization) return undefined;
  const basic = /^Basic[ \t]+(\S+)[ \t]*$/i.exec(authorization);
  if (!basic) return authorization;
  const decoded = Buffer.from(basic[1]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  return colon < 0 ? authorization : `Bearer ${decoded.slice(colon + 1)}`;
}

async function authenticate(
  request: HttpRequest,
  context: MirrorContext,
): Promise<TokenRecord | undefined> {
  if (!context.auth) return undefined;
  return context.auth.authorize(
    presentedToken(request.headers.authorization),
    ROUTE_SCOPES['GET|HEAD /v2/*'],
    `${request.method} ${request.path}`,
  );
}

/**
 * `GET /v2/token`: the realm our challenge names. `docker login cache -u <anything> -p ic_...`
 * and daemons after a 401 come here with Basic credentials; the answer is the same token, as a
 * bearer token for the requests that follow (its scope is checked on each of them).
 */
async function issueToken(request: HttpRequest, context: MirrorContext): Promise<HttpResponse> {
  if (!context.auth) {
    // Without access control nothing is challenged; a client asking anyway gets a token that
    // is never checked.
    return json({ token: 'anonymous', access_token: 'anonymous', expires_in: 3600 });
  }
  const authorization = request.headers.authorization;
  if (!authorization || !/^Basic /i.test(authorization)) {
    return {
      ...ociErrorResponse(
        new UnauthorizedError(
          'log in with an image-cache token as the password: docker login <cache> -u <any name> -p ic_...',
        ),
        'repository',
      ),
      headers: {
        'Content-Type': 'application/json',
        'WWW-Authenticate': `Basic realm="${SERVICE}"`,
      },
    };
  }
  const token = presentedToken(authorization)!.replace(/^Bearer /, '');
  try {
    await context.auth.authorize(`Bearer ${token}`, 'read', 'GET /v2/token');
  } catch (error) {
    if (error instanceof ForbiddenError) throw error;
    return {
      ...ociErrorResponse(error, 'repository'),
      headers: {
        'Content-Type': 'application/json',
        'WWW-Authenticate': `Basic realm="${SERVICE}"`,
      },
    };
  }
  return json({
    token,
    access_token: token,
    expires_in: 3600,
    issued_at: new Date(context.clock.now()).toISOString(),
  });
}

/** Where a client gets a bearer token: this server's own /v2/token, as the client reached it. */
function challenge(request: HttpRequest): string {
  const host = request.headers.host ?? 'localhost';
  const proto = request.headers['x-forwarded-proto']?.split(',')[0]?.trim() || 'http';
  return `Bearer realm="${proto}://${host}/v2/token",service="${SERVICE}"`;
}

function json(value: unknown): HttpResponse {
  return withHeaders({
    status: 200,
    headers: { 'Content-Type': 'application/json' },
    body: `${JSON.stringify(value)}\n`,
  });
}

function decodePath(path: string): string {
  try {
    return decodeURIComponent(path);
  } catch {
    throw new InvalidArgumentError('malformed percent-encoding in the request path');
  }
}
