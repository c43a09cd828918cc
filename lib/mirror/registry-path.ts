import { isDigest } from '../digest.ts';
import { InvalidReferenceError, RegistryNotAllowedError } from '../errors.ts';
import type { Reference } from '../model.ts';
import { normalizeRegistry, parseReference, parseTag } from '../reference.ts';

/**
 * What a registry-API request names. Which upstream it is for is decided in this order:
 * containerd's `?ns=<registry>` (sent on every request to a `hosts.toml` mirror); else a first
 * path component that is a registry host (`/v2/ghcr.io/org/app/...`, what
 * `docker pull cache:5115/ghcr.io/org/app:1` and skopeo send); else docker.io (what dockerd's
 * `registry-mirrors` sends: `/v2/library/nginx/...`). A registry outside the allow-list is
 * refused here, before anything is contacted.
 */
export type RegistryPath =
  | { kind: 'base' }
  | { kind: 'token' }
  | {
      kind: 'manifests' | 'blobs' | 'tags' | 'referrers';
      /** The repository, with the tag or digest of the request where there is one. */
      ref: Reference;
      /** The `ns` the client sent, to echo as OCI-Namespace. */
      namespace?: string;
    };

const ROUTES = /^\/v2\/(.+)\/(manifests|blobs|referrers)\/([^/]+)$/;
const TAGS = /^\/v2\/(.+)\/tags\/list$/;

/** Undefined for paths under /v2 that name nothing the registry API has (a 404). */
export function parseRegistryPath(
  path: string,
  query: URLSearchParams,
  allowed: ReadonlyMap<string, unknown>,
): RegistryPath | undefined {
  if (path === '/v2' || path === '/v2/') return { kind: 'base' };
  if (path === '/v2/token') return { kind: 'token' };
  const routed = ROUTES.exec(path);
  const tags = routed ? undefined : TAGS.exec(path);
  const name = routed?.[1] ?? tags?.[1];
  if (name === undefined) return undefined;
  const kind = (routed?.[2] ?? 'tags') as 'manifests' | 'blobs' | 'tags' | 'referrers';
  const namespace = query.get('ns') ?? undefined;
  const repository = repositoryOf(name, namespace);
  if (!allowed.has(repository.registry)) throw new RegistryNotAllowedError(repository.registry);
  const reference = routed?.[3];
  if (reference === undefined) return { kind, ref: repository, namespace };
  if (kind === 'manifests') {
    const ref = isDigest(reference)
      ? { ...repository, digest: reference }
      : { ...repository, tag: parseTag(reference) };
    return { kind, ref, namespace };
  }
  if (!isDigest(reference)) {
    throw new InvalidReferenceError(`invalid digest ${JSON.stringify(reference)}`);
  }
  return { kind, ref: { ...repository, digest: reference }, namespace };
}

/** `library/nginx` (docker.io), `ghcr.io/org/app`, or `org/app` with ns=ghcr.io. */
function repositoryOf(name: string, namespace: string | undefined): Reference {
  // A tag or digest belongs after /manifests/, never in the name.
  if (/[:@]/.test(name.slice(name.lastIndexOf('/') + 1))) {
    throw new InvalidReferenceError(`invalid repository name ${JSON.stringify(name)}`);
  }
  const qualified = namespace === undefined ? name : `${namespaceRegistry(namespace)}/${name}`;
  const { registry, repository } = parseReference(qualified);
  return { registry, repository };
}

/** Docker Hub goes by three names in `ns`; the catalog knows it as docker.io. */
function namespaceRegistry(namespace: string): string {
  const host = namespace.toLowerCase();
  return host === 'registry-1.docker.io' ? 'docker.io' : normalizeRegistry(host);
}
