/**
 * Every presigned URL the S3 adapter hands out is signed here, so each one is valid for the
 * lifetime it states. A SigV4 URL signed with session credentials (a Lambda role's) dies when
 * they do, whatever its X-Amz-Expires says: the lifetime is capped at the credentials' remaining
 * life less a margin, and that effective lifetime is what callers report. The URLs carry no
 * header a plain client (curl, docker) would not send: only `host` is signed.
 */
import { S3Client, type S3ClientConfig, type ServiceInputTypes } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import type { AwsCredentialIdentity, MetadataBearer } from '@smithy/types';
import { ImageCacheError } from '../../errors.ts';
import { s3Call } from './errors.ts';

/** Taken off the credentials' remaining life: clock skew and the time to start the request. */
export const CREDENTIAL_MARGIN_SECONDS = 60;
/** A URL shorter-lived than this is no use to a client; credentials are refreshed first. */
export const MIN_URL_SECONDS = 60;
/** SigV4's longest presigned lifetime. */
export const MAX_URL_SECONDS = 7 * 24 * 3600;

/** An S3 command, as getSignedUrl takes it (generic per command: a union does not infer). */
type Signable<I extends ServiceInputTypes, O extends MetadataBearer> = Parameters<
  typeof getSignedUrl<ServiceInputTypes, I, O>
>[1];

/** A signer for URLs of one lifetime, bound to one resolved set of credentials. */
export interface Presigner {
  /** Seconds each URL it signs stays valid: the asked lifetime, capped by the credentials'. */
  readonly expiresIn: number;
  sign<I extends ServiceInputTypes, O extends MetadataBearer>(
    command: Signable<I, O>,
    key: string,
  ): Promise<string>;
}

/**
 * Signs the URLs of one S3 client. It keeps the signing client it last built, for the
 * credentials it was built with: a blob redirect should not build a client.
 */
export class UrlSigner {
  readonly #client: S3Client;
  #cached?: { credentials: AwsCredentialIdentity; signer: S3Client };

  constructor(client: S3Client) {
    this.#client = client;
  }

  /**
   * A presigner for URLs of up to `wantedSeconds`. Credentials with under MIN_URL_SECONDS of
   * useful life left are refreshed once (the SDK's provider can be forced); still too short is
   * an error rather than a URL that dies before a client can use it.
   */
  async open(wantedSeconds: number, now: () => number = Date.now): Promise<Presigner> {
    let credentials = await resolveCredentials(this.#client, false);
    let expiresIn = lifetime(wantedSeconds, credentials, now());
    if (expiresIn < Math.min(MIN_URL_SECONDS, wantedSeconds)) {
      credentials = await resolveCredentials(this.#client, true);
      expiresIn = lifetime(wantedSeconds, credentials, now());
    }
    if (expiresIn < Math.min(MIN_URL_SECONDS, wantedSeconds)) {
      throw new ImageCacheError(
        'INTERNAL',
        `cannot presign a URL: the S3 credentials expire at ${credentials.expiration?.toISOString()}, ` +
          `too soon for a URL of ${MIN_URL_SECONDS} s even after a refresh`,
      );
    }
    const signer = this.#signingClient(credentials);
    return {
      expiresIn,
      sign: (command, key) =>
        s3Call(getSignedUrl(signer, command, { expiresIn }), `presign ${nameOf(command)}`, key),
    };
  }

  #signingClient(credentials: AwsCredentialIdentity): S3Client {
    if (this.#cached?.credentials !== credentials) {
      this.#cached = { credentials, signer: signingClient(this.#client, credentials) };
    }
    return this.#cached.signer;
  }
}

/** The URL lifetime the credentials allow: `wanted`, or less when they expire sooner. */
function lifetime(wanted: number, credentials: AwsCredentialIdentity, now: number): number {
  if (!credentials.expiration) return wanted;
  const left = Math.floor((credentials.expiration.getTime() - now) / 1000);
  return Math.max(0, Math.min(wanted, left - CREDENTIAL_MARGIN_SECONDS));
}

async function resolveCredentials(
  client: S3Client,
  forceRefresh: boolean,
): Promise<AwsCredentialIdentity> {
  // The resolved config's provider is the SDK's memoised one, which takes forceRefresh.
  const provider = client.config.credentials as (options?: {
    forceRefresh?: boolean;
  }) => Promise<AwsCredentialIdentity>;
  return provider({ forceRefresh });
}

/**
 * The client's settings with the credentials just resolved (so the URL is signed with exactly
 * the ones its lifetime was measured against) and without flexible checksums. With the SDK's
 * default (WHEN_SUPPORTED) a presigned PutObject or UploadPart URL names `x-amz-checksum-crc32`
 * of an empty body, so S3 refuses every real upload (BadDigest), and a GetObject URL signs
 * `x-amz-checksum-mode`, which curl and docker do not send, so S3 refuses the GET.
 */
function signingClient(client: S3Client, credentials: AwsCredentialIdentity): S3Client {
  const config = client.config;
  const settings: S3ClientConfig = {
    region: config.region,
    credentials,
    forcePathStyle: config.forcePathStyle,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  };
  if (config.isCustomEndpoint && config.endpoint) settings.endpoint = config.endpoint;
  return new S3Client(settings);
}

function nameOf(command: object): string {
  return command.constructor.name.replace(/Command$/, '');
}
