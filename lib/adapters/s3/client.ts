import { S3Client, type S3ClientConfig } from '@aws-sdk/client-s3';
import { type AwsSdkSettings, clientLocation } from '../../config/aws-sdk.ts';

export interface S3ClientSettings {
  /** Default: the SDK's (AWS_REGION, profile); `us-east-1` when only an endpoint is given. */
  region?: string;
  /** Default: AWS_ENDPOINT_URL_S3, then AWS_ENDPOINT_URL; unset means AWS itself. */
  endpoint?: string;
  /** Default: true with a custom endpoint (emulators on 127.0.0.1 have no bucket DNS names). */
  forcePathStyle?: boolean;
  /** Default: the SDK's provider chain (environment, profile, container, instance role). */
  credentials?: S3ClientConfig['credentials'];
  /**
   * Default: 'WHEN_REQUIRED' with a custom endpoint, the SDK's 'WHEN_SUPPORTED' on AWS, unless
   * AWS_REQUEST_CHECKSUM_CALCULATION / AWS_RESPONSE_CHECKSUM_VALIDATION say otherwise.
   */
  checksums?: 'WHEN_SUPPORTED' | 'WHEN_REQUIRED';
}

/**
 * Builds an S3Client from the SDK's standard settings. Why checksums drop to WHEN_REQUIRED off
 * AWS: since SDK 3.729 the default (WHEN_SUPPORTED) sends streaming bodies as `aws-chunked`
 * with a CRC trailer and asks for checksums on every GET; S3-protocol servers that predate
 * that (s3rver 3.7 stores the chunk framing as the object's bytes; several gateways reject
 * the trailer) then corrupt or refuse uploads. The adapter itself still asks for CRC32 on
 * every PutObject and UploadPart (an explicit algorithm is sent in either mode, as a header
 * since bodies are Buffers), so parts are checked in transit on AWS too.
 */
export function s3Client(sdk: AwsSdkSettings, settings: S3ClientSettings = {}): S3Client {
  const standard = clientLocation(sdk, 's3');
  const endpoint = settings.endpoint ?? standard.endpoint;
  const custom = endpoint !== undefined;
  const checksums = settings.checksums ?? (custom ? 'WHEN_REQUIRED' : undefined);
  const config: S3ClientConfig = {
    forcePathStyle: settings.forcePathStyle ?? custom,
  };
  if (endpoint !== undefined) config.endpoint = endpoint;
  const region = settings.region ?? standard.region ?? (custom ? 'us-east-1' : undefined);
  if (region !== undefined) config.region = region;
  if (settings.credentials !== undefined) config.credentials = settings.credentials;
  if (checksums !== undefined) {
    if (settings.checksums !== undefined || !sdk.sdkReads.requestChecksum) {
      config.requestChecksumCalculation = checksums;
    }
    if (settings.checksums !== undefined || !sdk.sdkReads.responseChecksum) {
      config.responseChecksumValidation = checksums;
    }
  }
  return new S3Client(config);
}
