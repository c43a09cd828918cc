import type { Digest } from './digest.ts';

/** What names a blob or manifest in another document (OCI descriptor). */
export interface Descriptor {
  mediaType: string;
  digest: Digest;
  size: number;
  platform?: Platform;
  annotations?: Record<string, string>;
  urls?: string[];
}

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
  'os.version'?: string;
}

/**
 * A parsed, normalised image reference: `docker.io/library/nginx:latest` is
 * `{registry: 'docker.io', repository: 'library/nginx', tag: 'latest'}`.
 * At least one of tag and digest is set once a default tag was applied.
 */
export interface Reference {
  registry: string;
  repository: string;
  tag?: string;
  digest?: Digest;
}

/** Repository names as stored: registry and path, `docker.io/library/nginx`. */
export type RepositoryName = string;

/** What an API token may do; each scope includes the ones before it (lib/auth/scopes.ts). */
export const SCOPES = ['read', 'pull', 'write', 'admin'] as const;
export type Scope = (typeof SCOPES)[number];
