/**
 * Which allow-listed registries are pulled without credentials, for /cache/registries and the
 * warning at start. Docker Hub is singled out: it limits anonymous pulls per source address,
 * and a cache (on Lambda, behind egress addresses other accounts share) reaches that limit
 * long before its users would have on their own.
 */
import { DEFAULT_REGISTRY as DOCKER_HUB } from '../reference.ts';
import type { CredentialOrigin, CredentialStatus } from './credential-source.ts';

/**
 * Whether the allow-list sends `docker.io` to Docker Hub itself: its limits do not apply to a
 * registry standing in for it (`docker.io=http://127.0.0.1:5000`, a company mirror).
 */
export function reachesDockerHub(registries: ReadonlyMap<string, URL>): boolean {
  const host = registries.get(DOCKER_HUB)?.hostname;
  return host !== undefined && (host === 'docker.io' || host.endsWith('.docker.io'));
}

export interface RegistryCredentialState {
  Credentials: 'configured' | 'anonymous';
  /** Where credentials for it are read from (and so where to put them). */
  CredentialsFrom: CredentialOrigin;
  /** Why using this registry anonymously will hurt; only for Docker Hub. */
  Warning?: string;
}

/** Every allow-listed registry's state, by name; the source re-reads a secret that is old. */
export async function registryCredentialStates(
  registries: ReadonlyMap<string, URL>,
  status: CredentialStatus,
): Promise<Map<string, RegistryCredentialState>> {
  const configured = await status.configuredRegistries();
  const hub = reachesDockerHub(registries);
  const states = new Map<string, RegistryCredentialState>();
  for (const name of registries.keys()) {
    const anonymous = !configured.has(name);
    states.set(name, {
      Credentials: anonymous ? 'anonymous' : 'configured',
      CredentialsFrom: status.origin,
      ...(anonymous && hub && name === DOCKER_HUB && { Warning: dockerHubWarning(status.origin) }),
    });
  }
  return states;
}

/** The warning to log at start, or undefined when Docker Hub is not allowed or has credentials. */
export async function anonymousDockerHubWarning(
  registries: ReadonlyMap<string, URL>,
  status: CredentialStatus,
): Promise<string | undefined> {
  return (await registryCredentialStates(registries, status)).get(DOCKER_HUB)?.Warning;
}

const WHERE_TO_PUT_THEM: Record<CredentialOrigin, string> = {
  secret:
    'put a Docker Hub access token in the registry secret (IMAGE_CACHE_REGISTRY_SECRET; see "Docker Hub credentials" in docs/aws.md)',
  'auth-file':
    'put a Docker Hub access token in the Docker config.json IMAGE_CACHE_AUTH_FILE names (see docs/configuration.md)',
};

function dockerHubWarning(origin: CredentialOrigin): string {
  return (
    'docker.io is pulled anonymously: Docker Hub limits anonymous pulls per source IP address, ' +
    'and a cache shares its address with every client (on Lambda, with other accounts too), ' +
    `so Docker Hub soon answers 429 Too Many Requests; ${WHERE_TO_PUT_THEM[origin]}`
  );
}
