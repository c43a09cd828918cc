/**
 * Upstream registry credentials held in AWS Secrets Manager (IMAGE_CACHE_REGISTRY_SECRET), in
 * the format IMAGE_CACHE_AUTH_FILE has: a Docker `config.json` with `auths`. The secret is
 * read once at start (a missing or unreadable secret stops the deployment there, not on the
 * first private pull), then again when a pull needs credentials and the copy is older than
 * `maxAgeMs`, or when a registry refused them: that is how a rotation reaches running
 * functions without a redeploy. A failed re-read keeps the last good credentials.
 */
import type { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { type AwsSdkSettings, clientLocation } from '../config/aws-sdk.ts';
import {
  ConfigError,
  type CredentialMap,
  parseAuthConfig,
  REGISTRY_SECRET_VAR,
} from '../config.ts';
import { type Clock, systemClock } from '../ports/clock.ts';
import type { Credentials } from '../registry/auth.ts';
import {
  type CredentialSource,
  type CredentialStatus,
  sameCredentials,
} from '../registry/credential-source.ts';

export interface SecretCredentialsOptions {
  /** The secret's name or ARN, as IMAGE_CACHE_REGISTRY_SECRET gives it. */
  secretId: string;
  /** Where the default client connects (see `secretsManagerClient`). */
  sdk: AwsSdkSettings;
  /** Default: a client from `sdk`. */
  client?: SecretsManagerClient;
  clock?: Clock;
  /** How long a read is used before the next pull that needs credentials reads again. */
  maxAgeMs?: number;
  /**
   * Least time between two reads. A registry refusing credentials that are simply wrong must
   * not turn every pull into a GetSecretValue call, nor must a Secrets Manager outage.
   */
  minIntervalMs?: number;
  /** Where a failed re-read is reported. Default: console.error. */
  log?: (message: string) => void;
}

export const DEFAULT_MAX_AGE_MS = 5 * 60_000;
export const DEFAULT_MIN_INTERVAL_MS = 10_000;

export class SecretCredentials implements CredentialSource, CredentialStatus {
  readonly origin = 'secret';
  readonly #secretId: string;
  readonly #client: SecretsManagerClient;
  readonly #clock: Clock;
  readonly #maxAgeMs: number;
  readonly #minIntervalMs: number;
  readonly #log: (message: string) => void;
  #credentials: CredentialMap;
  #readAt: number;
  #attemptAt: number;
  // Concurrent pulls that all find the copy stale wait for one read, not one each.
  #reading: Promise<void> | undefined;

  private constructor(
    options: SecretCredentialsOptions,
    client: SecretsManagerClient,
    first: { credentials: CredentialMap; readAt: number },
  ) {
    this.#secretId = options.secretId;
    this.#client = client;
    this.#clock = options.clock ?? systemClock;
    this.#maxAgeMs = options.maxAgeMs ?? DEFAULT_MAX_AGE_MS;
    this.#minIntervalMs = options.minIntervalMs ?? DEFAULT_MIN_INTERVAL_MS;
    this.#log = options.log ?? ((message) => console.error(message));
    this.#credentials = first.credentials;
    this.#readAt = first.readAt;
    this.#attemptAt = first.readAt;
  }

  /** Reads the secret; a ConfigError saying what is wrong (never what it holds) when it fails. */
  static async open(options: SecretCredentialsOptions): Promise<SecretCredentials> {
    const client = options.client ?? (await secretsManagerClient(options.secretId, options.sdk));
    const readAt = (options.clock ?? systemClock).now();
    try {
      const credentials = await readSecret(client, options.secretId);
      return new SecretCredentials(options, client, { credentials, readAt });
    } catch (error) {
      if (!options.client) client.destroy();
      throw error;
    }
  }

  async get(registry: string): Promise<Credentials | undefined> {
    await this.#rereadWhenOld();
    return this.#credentials.get(registry);
  }

  /** Follows a rotation as `get` does, so /cache/registries reports what the next pull uses. */
  async configuredRegistries(): Promise<ReadonlySet<string>> {
    await this.#rereadWhenOld();
    return new Set(this.#credentials.keys());
  }

  async refused(registry: string, credentials: Credentials): Promise<Credentials | undefined> {
    const current = this.#credentials.get(registry);
    // Another pull already read the rotated secret while this one was in flight.
    if (current && !sameCredentials(current, credentials)) return current;
    // A read in flight is joined whatever the interval: it may be the one that finds them.
    const recent = this.#clock.now() - this.#attemptAt < this.#minIntervalMs;
    if (recent && !this.#reading) return undefined;
    await this.#reread();
    const next = this.#credentials.get(registry);
    return next && !sameCredentials(next, credentials) ? next : undefined;
  }

  close(): void {
    this.#client.destroy();
  }

  async #rereadWhenOld(): Promise<void> {
    const now = this.#clock.now();
    if (now - this.#readAt >= this.#maxAgeMs && now - this.#attemptAt >= this.#minIntervalMs) {
      await this.#reread();
    }
  }

  async #reread(): Promise<void> {
    this.#reading ??= this.#readKeepingLastGood().finally(() => {
      this.#reading = undefined;
    });
    await this.#reading;
  }

  async #readKeepingLastGood(): Promise<void> {
    const startedAt = this.#clock.now();
    this.#attemptAt = startedAt;
    try {
      this.#credentials = await readSecret(this.#client, this.#secretId);
      this.#readAt = startedAt;
    } catch (error) {
      const since = new Date(this.#readAt).toISOString();
      this.#log(`${(error as Error).message}; keeping the registry credentials read at ${since}`);
    }
  }
}

/**
 * A client from the SDK's standard settings, with AWS_ENDPOINT_URL_SECRETS_MANAGER for a local
 * stand-in. A secret named by ARN is asked for in the ARN's region, the only one that can
 * answer for it. Timeouts are short: a pull waits for this read, and a hung one must not hold
 * it for minutes.
 */
export async function secretsManagerClient(
  secretId: string,
  sdk: AwsSdkSettings,
): Promise<SecretsManagerClient> {
  const { SecretsManagerClient } = await import('@aws-sdk/client-secrets-manager');
  const location = clientLocation(sdk, 'secretsmanager');
  const region = arnRegion(secretId) ?? location.region;
  return new SecretsManagerClient({
    ...location,
    ...(region && { region }),
    requestHandler: { connectionTimeout: 3_000, requestTimeout: 10_000 },
  });
}

/** `arn:aws:secretsmanager:eu-west-1:123456789012:secret:name-AbCdEf` -> `eu-west-1`. */
export function arnRegion(secretId: string): string | undefined {
  return /^arn:[^:]+:secretsmanager:([^:]+):/.exec(secretId)?.[1];
}

async function readSecret(client: SecretsManagerClient, secretId: string): Promise<CredentialMap> {
  const { GetSecretValueCommand } = await import('@aws-sdk/client-secrets-manager');
  let secretString: string | undefined;
  try {
    const output = await client.send(new GetSecretValueCommand({ SecretId: secretId }));
    secretString = output.SecretString;
  } catch (error) {
    throw new ConfigError(readFailure(error, secretId), { cause: error });
  }
  if (secretString === undefined) {
    throw new ConfigError(
      `${REGISTRY_SECRET_VAR}: secret ${secretId} has no SecretString (a binary secret): store the Docker config.json as the secret's text`,
    );
  }
  return parseAuthConfig(secretString, REGISTRY_SECRET_VAR, `secret ${secretId}`);
}

/**
 * Says what to fix for the failures an operator meets. AWS's own messages name the caller and
 * the resource, never a secret's value, so they are kept; the SDK error itself is not printed
 * (its `$response` may carry a body).
 */
function readFailure(error: unknown, secretId: string): string {
  const name = (error as Error | undefined)?.name ?? 'Error';
  const message = (error as Error | undefined)?.message ?? String(error);
  const where = `${REGISTRY_SECRET_VAR}: reading secret ${secretId}`;
  switch (name) {
    case 'ResourceNotFoundException':
      return `${where}: no such secret (or it has no current version) in this account and region: ${message}`;
    case 'AccessDeniedException':
      return `${where}: access denied; the function's role needs secretsmanager:GetSecretValue on the secret: ${message}`;
    case 'DecryptionFailure':
      return `${where}: cannot decrypt it; with a customer managed KMS key the role needs kms:Decrypt on that key: ${message}`;
    case 'CredentialsProviderError':
      return `${where}: no AWS credentials found (environment, profile or role): ${message}`;
    default:
      return `${where} failed: ${name}: ${message}`;
  }
}
