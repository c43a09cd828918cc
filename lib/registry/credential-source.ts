import type { Credentials } from './auth.ts';

/**
 * Where the registry client gets what to log in with. Asked per registry, only when a registry
 * has challenged us, so a source that reads a remote secret does its work when a pull needs
 * credentials and not before. Whatever a source returns for a registry is sent to that
 * registry (and its token realm) alone.
 */
export interface CredentialSource {
  /** The credentials for `registry` (`docker.io`, `localhost:5000`), or undefined: anonymous. */
  get(registry: string): Promise<Credentials | undefined>;
  /**
   * `registry` refused `credentials`. Resolves with other credentials for it when the source
   * has newer ones (a rotated secret), worth exactly one more try; undefined when it has not.
   */
  refused(registry: string, credentials: Credentials): Promise<Credentials | undefined>;
}

/** Where an operator puts upstream credentials: the registry secret (AWS) or the auth file. */
export type CredentialOrigin = 'secret' | 'auth-file';

/**
 * What /cache/registries may learn about upstream credentials: which registries have some and
 * where they come from, never the credentials or the user name.
 */
export interface CredentialStatus {
  readonly origin: CredentialOrigin;
  /** Registries with credentials; a source that re-reads when old does so here too. */
  configuredRegistries(): Promise<ReadonlySet<string>>;
}

/** A fixed map, read once at start (IMAGE_CACHE_AUTH_FILE): nothing newer ever appears. */
export function staticCredentials(
  map: ReadonlyMap<string, Credentials>,
): CredentialSource & CredentialStatus {
  return {
    origin: 'auth-file',
    get: async (registry) => map.get(registry),
    refused: async () => undefined,
    configuredRegistries: async () => new Set(map.keys()),
  };
}

export function sameCredentials(a: Credentials, b: Credentials): boolean {
  return a.username === b.username && a.password === b.password;
}
