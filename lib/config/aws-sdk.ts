/**
 * The AWS SDK's standard settings that the adapters' clients need spelled out: endpoints (for
 * emulators and stand-ins), the region, and which of the SDK's own environment settings are
 * present (then ours step aside and the SDK reads them itself). Credentials are not here: the
 * SDK's provider chain finds them (environment, profile, container or instance role).
 */

import { nonEmpty } from './values.ts';

export type AwsService = 's3' | 'dynamodb' | 'lambda' | 'secretsmanager' | 'sqs';

const ENDPOINT_VARS: Record<AwsService, string> = {
  s3: 'AWS_ENDPOINT_URL_S3',
  dynamodb: 'AWS_ENDPOINT_URL_DYNAMODB',
  lambda: 'AWS_ENDPOINT_URL_LAMBDA',
  secretsmanager: 'AWS_ENDPOINT_URL_SECRETS_MANAGER',
  sqs: 'AWS_ENDPOINT_URL_SQS',
};

export interface AwsSdkSettings {
  /** AWS_REGION, then AWS_DEFAULT_REGION; unset leaves it to the SDK (profile, instance). */
  region?: string;
  /** AWS_ENDPOINT_URL_<SERVICE>, then AWS_ENDPOINT_URL; unset means AWS itself. */
  endpoints: Partial<Record<AwsService, string>>;
  /** Set in the environment, so the SDK applies them and no default of ours may override. */
  sdkReads: { maxAttempts: boolean; requestChecksum: boolean; responseChecksum: boolean };
}

export function parseAwsSdkSettings(env: NodeJS.ProcessEnv): AwsSdkSettings {
  const endpoints: AwsSdkSettings['endpoints'] = {};
  for (const [service, variable] of Object.entries(ENDPOINT_VARS) as [AwsService, string][]) {
    const endpoint = (nonEmpty(env[variable]) ?? nonEmpty(env.AWS_ENDPOINT_URL))?.trim();
    if (endpoint !== undefined) endpoints[service] = endpoint;
  }
  const region = (nonEmpty(env.AWS_REGION) ?? nonEmpty(env.AWS_DEFAULT_REGION))?.trim();
  return {
    ...(region !== undefined && { region }),
    endpoints,
    sdkReads: {
      maxAttempts: nonEmpty(env.AWS_MAX_ATTEMPTS) !== undefined,
      requestChecksum: nonEmpty(env.AWS_REQUEST_CHECKSUM_CALCULATION) !== undefined,
      responseChecksum: nonEmpty(env.AWS_RESPONSE_CHECKSUM_VALIDATION) !== undefined,
    },
  };
}

/**
 * Where one service's client connects: its endpoint, and the region (us-east-1 when only an
 * endpoint is given: emulators ignore it but the SDK refuses to sign without one).
 */
export function clientLocation(
  sdk: AwsSdkSettings,
  service: AwsService,
): { endpoint?: string; region?: string } {
  const endpoint = sdk.endpoints[service];
  const region = sdk.region ?? (endpoint !== undefined ? 'us-east-1' : undefined);
  return {
    ...(endpoint !== undefined && { endpoint }),
    ...(region !== undefined && { region }),
  };
}
