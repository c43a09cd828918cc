/**
 * Which backend holds blobs and the catalog, and the AWS backend's resources and SDK settings.
 */
import { type AwsSdkSettings, parseAwsSdkSettings } from './aws-sdk.ts';
import { AUTH_FILE_VAR } from './registries.ts';
import { byteSize, ConfigError, nonEmpty } from './values.ts';

/**
 * The AWS backend's resources. Credentials come from the SDK's provider chain; region and
 * endpoints (AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL_DYNAMODB...) are read once into `sdk`.
 */
export interface AwsBackendConfig {
  sdk: AwsSdkSettings;
  /**
   * IMAGE_CACHE_UPLOAD_PART_SIZE: largest load upload given one presigned PUT, and the part
   * size above it; unset leaves the store's default (64 MiB).
   */
  uploadPartSize?: number;
  bucket: string;
  table: string;
  /** Create the bucket and table when missing (local emulators); never on by default. */
  createResources: boolean;
  /**
   * IMAGE_CACHE_REGISTRY_SECRET: name or ARN of the Secrets Manager secret that holds the
   * upstream credentials (a Docker config.json), instead of IMAGE_CACHE_AUTH_FILE.
   */
  registrySecret?: string;
  /**
   * IMAGE_CACHE_WORKER_FUNCTION: the Lambda function that runs background jobs (asynchronous
   * invocations); without it jobs run in this process.
   */
  workerFunction?: string;
  /**
   * IMAGE_CACHE_JOB_QUEUE_URL: the SQS queue that feeds the worker function. Preferred over
   * IMAGE_CACHE_WORKER_FUNCTION when both are set: a queued job outlives a failed or dropped
   * invocation, an asynchronous invoke may not.
   */
  jobQueueUrl?: string;
}

const BACKEND_VAR = 'IMAGE_CACHE_BACKEND';
const BUCKET_VAR = 'IMAGE_CACHE_BUCKET';
const TABLE_VAR = 'IMAGE_CACHE_TABLE';
const WORKER_FUNCTION_VAR = 'IMAGE_CACHE_WORKER_FUNCTION';
const JOB_QUEUE_URL_VAR = 'IMAGE_CACHE_JOB_QUEUE_URL';
export const REGISTRY_SECRET_VAR = 'IMAGE_CACHE_REGISTRY_SECRET';
const UPLOAD_PART_SIZE_VAR = 'IMAGE_CACHE_UPLOAD_PART_SIZE';
// S3 refuses parts under 5 MiB (but the last) and over 5 GiB.
const MIN_PART_SIZE = 5 * 1024 * 1024;
const MAX_PART_SIZE = 5 * 1024 * 1024 * 1024;

export interface BackendSettings {
  backend: 'embedded' | 'aws';
  /** Set exactly when backend is 'aws'. */
  aws?: AwsBackendConfig;
}

/** `--backend` (or IMAGE_CACHE_BACKEND): embedded by default; aws needs a bucket and a table. */
export function parseBackendSettings(
  flag: string | undefined,
  env: NodeJS.ProcessEnv,
  createResources: boolean,
): BackendSettings {
  const setting = flag !== undefined ? '--backend' : BACKEND_VAR;
  const backend = (flag ?? nonEmpty(env[BACKEND_VAR]) ?? 'embedded').trim();
  if (backend !== 'embedded' && backend !== 'aws') {
    throw new ConfigError(`${setting}: ${JSON.stringify(backend)} must be embedded or aws`);
  }
  if (backend === 'embedded') {
    if (createResources) {
      throw new ConfigError('--create-resources only applies to --backend aws');
    }
    // Refused rather than ignored: ignoring it would pull anonymously while the operator
    // believes the secret's credentials are in use.
    if (nonEmpty(env[REGISTRY_SECRET_VAR])) {
      throw new ConfigError(
        `${REGISTRY_SECRET_VAR} is read by --backend aws only: the embedded backend takes its credentials from ${AUTH_FILE_VAR}`,
      );
    }
    return { backend };
  }
  const bucket = nonEmpty(env[BUCKET_VAR])?.trim();
  const table = nonEmpty(env[TABLE_VAR])?.trim();
  if (!bucket || !table) {
    const missing = [!bucket && BUCKET_VAR, !table && TABLE_VAR].filter(Boolean).join(' and ');
    throw new ConfigError(
      `--backend aws needs ${missing}: the S3 bucket and DynamoDB table to use`,
    );
  }
  // S3's rules for bucket names (the DNS-compatible ones every region accepts).
  if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket) || bucket.includes('..')) {
    throw new ConfigError(
      `${BUCKET_VAR}: ${JSON.stringify(bucket)} is not a valid S3 bucket name (3-63 lowercase letters, digits, dots and hyphens)`,
    );
  }
  if (!/^[A-Za-z0-9_.-]{3,255}$/.test(table)) {
    throw new ConfigError(
      `${TABLE_VAR}: ${JSON.stringify(table)} is not a valid DynamoDB table name (3-255 letters, digits, _ . -)`,
    );
  }
  const registrySecret = registrySecretSetting(env);
  const workerFunction = nonEmpty(env[WORKER_FUNCTION_VAR])?.trim();
  const uploadPartSize = uploadPartSizeSetting(env);
  const jobQueueUrl = jobQueueUrlSetting(env);
  return {
    backend,
    aws: {
      bucket,
      table,
      createResources,
      sdk: parseAwsSdkSettings(env),
      ...(uploadPartSize !== undefined && { uploadPartSize }),
      ...(registrySecret && { registrySecret }),
      ...(workerFunction && { workerFunction }),
      ...(jobQueueUrl && { jobQueueUrl }),
    },
  };
}

/**
 * IMAGE_CACHE_REGISTRY_SECRET: a secret's name or ARN, checked against Secrets Manager's rules
 * so a typo fails here rather than as "not found" at the first read. Not combined with
 * IMAGE_CACHE_AUTH_FILE: with two sources, a registry named in both would need a winner, and
 * rotating the secret would leave the file's copy behind. One place holds the credentials.
 */
function registrySecretSetting(env: NodeJS.ProcessEnv): string | undefined {
  const secret = nonEmpty(env[REGISTRY_SECRET_VAR])?.trim();
  if (secret === undefined) return undefined;
  if (nonEmpty(env[AUTH_FILE_VAR])) {
    throw new ConfigError(
      `${AUTH_FILE_VAR} and ${REGISTRY_SECRET_VAR} are both set: keep the credentials in one of them (on AWS, the secret)`,
    );
  }
  const arn = /^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:(.+)$/.exec(secret);
  if (secret.startsWith('arn:') && !arn) {
    throw new ConfigError(
      `${REGISTRY_SECRET_VAR}: ${JSON.stringify(secret)} is not a Secrets Manager secret ARN (arn:aws:secretsmanager:<region>:<account>:secret:<name>)`,
    );
  }
  if (!/^[A-Za-z0-9/_+=.@-]{1,512}$/.test(arn?.[1] ?? secret)) {
    throw new ConfigError(
      `${REGISTRY_SECRET_VAR}: ${JSON.stringify(secret)} is not a valid secret name (1-512 letters, digits and / _ + = . @ -)`,
    );
  }
  return secret;
}

/**
 * IMAGE_CACHE_JOB_QUEUE_URL: a queue URL as SQS answers it (https://sqs.<region>.amazonaws.com/
 * <account>/<name>), or an emulator's http one; checked here so a queue name or ARN fails at
 * start rather than at the first job.
 */
function jobQueueUrlSetting(env: NodeJS.ProcessEnv): string | undefined {
  const text = nonEmpty(env[JOB_QUEUE_URL_VAR])?.trim();
  if (text === undefined) return undefined;
  let url: URL | undefined;
  try {
    url = new URL(text);
  } catch {
    url = undefined;
  }
  if (!url || (url.protocol !== 'https:' && url.protocol !== 'http:') || url.pathname === '/') {
    throw new ConfigError(
      `${JOB_QUEUE_URL_VAR}: ${JSON.stringify(text)} is not an SQS queue URL (https://sqs.<region>.amazonaws.com/<account>/<queue>)`,
    );
  }
  return text;
}

function uploadPartSizeSetting(env: NodeJS.ProcessEnv): number | undefined {
  const text = nonEmpty(env[UPLOAD_PART_SIZE_VAR]);
  if (text === undefined) return undefined;
  const size = byteSize({ name: UPLOAD_PART_SIZE_VAR, text });
  if (size < MIN_PART_SIZE || size > MAX_PART_SIZE) {
    throw new ConfigError(
      `${UPLOAD_PART_SIZE_VAR}: ${JSON.stringify(text)} must be from 5MiB to 5GiB (S3's part sizes)`,
    );
  }
  return size;
}
