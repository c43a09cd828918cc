/**
 * The streaming front: a CloudFront distribution in front of the stream function's URL, which
 * has auth type AWS_IAM, so the URL answers only requests CloudFront signs for this distribution
 * (origin access control) and nothing anonymous reaches the function. The distribution's name is
 * the stable DOCKER_HOST for the docker CLI: it survives a replaced function URL, and an alias
 * (custom-domain.ts) gives it our own name. An optional WAF web ACL (edge-waf.ts) rate-limits it.
 *
 * Request bodies do not pass this origin: with origin access control a PUT or POST to a function
 * URL must carry its body's SHA-256 in x-amz-content-sha256 from the client ("Restrict access to
 * an AWS Lambda function URL origin", CloudFront developer guide), which docker clients never
 * send. So the routes with bodies (`POST /images/load`, `/cache/loads*`) are sent to the HTTP API
 * instead, whose 10 MB payload is what those routes were built for; body-less POSTs (pull, tag,
 * prune) are signed over the empty payload and reach the function.
 */
import { Duration } from 'aws-cdk-lib';
import type { ICertificate } from 'aws-cdk-lib/aws-certificatemanager';
import {
  AllowedMethods,
  type BehaviorOptions,
  CachePolicy,
  Distribution,
  Function as EdgeFunction,
  FunctionCode,
  FunctionEventType,
  FunctionRuntime,
  OriginProtocolPolicy,
  OriginRequestPolicy,
  SecurityPolicyProtocol,
  ViewerProtocolPolicy,
} from 'aws-cdk-lib/aws-cloudfront';
import { FunctionUrlOrigin, HttpOrigin } from 'aws-cdk-lib/aws-cloudfront-origins';
import {
  type FunctionUrl,
  FunctionUrlAuthType,
  type IFunction,
  InvokeMode,
} from 'aws-cdk-lib/aws-lambda';
import { Construct } from 'constructs';
import { viewerRequestCode } from './viewer-request-function.ts';

/**
 * How long CloudFront waits for the function's first byte, and between two bytes after it: the
 * most the default quota allows (120 s, "Response timeout per origin" in CloudFront's quotas;
 * more needs a quota increase, and a deploy asking for more without one fails). Pull progress
 * and saves write well within it once they have begun.
 */
export const STREAM_READ_TIMEOUT = Duration.seconds(120);

/** The paths whose requests carry a body, which the HTTP API takes (see above). */
export const UPLOAD_PATHS = ['*/images/load', '*/cache/loads*'] as const;

export interface StreamEdgeProps {
  streamFunction: IFunction;
  /** The HTTP API's host (`<id>.execute-api.<region>.<suffix>`), for the upload paths. */
  httpApiHost: string;
  /** Our own name for the distribution, with its us-east-1 certificate. */
  alias?: { domainName: string; certificate: ICertificate };
  /** A CLOUDFRONT-scope WAF web ACL to attach (edge-waf.ts). */
  webAclArn?: string;
}

export class StreamEdge extends Construct {
  readonly url: FunctionUrl;
  readonly distribution: Distribution;
  /** The name clients use: the alias, or the distribution's own `*.cloudfront.net`. */
  readonly host: string;

  constructor(scope: Construct, id: string, props: StreamEdgeProps) {
    super(scope, id);
    this.url = props.streamFunction.addFunctionUrl({
      // Only CloudFront, signing with origin access control, may call it (granted below by the
      // origin, scoped to this distribution); our bearer tokens still guard every route.
      authType: FunctionUrlAuthType.AWS_IAM,
      invokeMode: InvokeMode.RESPONSE_STREAM,
    });
    const viewerRequest = new EdgeFunction(this, 'ViewerRequest', {
      comment: 'image-cache: keep the viewer Authorization and Host past origin access control',
      runtime: FunctionRuntime.JS_2_0,
      code: FunctionCode.fromInline(viewerRequestCode()),
    });
    // Nothing is cached (every answer depends on the token and the catalog's state) and nothing
    // is compressed (tarballs are compressed already; progress lines must not wait for a buffer).
    const passThrough = {
      viewerProtocolPolicy: ViewerProtocolPolicy.HTTPS_ONLY,
      allowedMethods: AllowedMethods.ALLOW_ALL,
      cachePolicy: CachePolicy.CACHING_DISABLED,
      // Host stays the origin's: the function URL and API Gateway route on it.
      originRequestPolicy: OriginRequestPolicy.ALL_VIEWER_EXCEPT_HOST_HEADER,
      compress: false,
    } satisfies Partial<BehaviorOptions>;
    const uploads: BehaviorOptions = {
      ...passThrough,
      origin: new HttpOrigin(props.httpApiHost, {
        protocolPolicy: OriginProtocolPolicy.HTTPS_ONLY,
        // API Gateway's own limit: it answers 503 at 30 s.
        readTimeout: Duration.seconds(30),
      }),
    };
    this.distribution = new Distribution(this, 'Distribution', {
      comment: 'image-cache: the streaming front (docker CLI)',
      defaultBehavior: {
        ...passThrough,
        origin: FunctionUrlOrigin.withOriginAccessControl(this.url, {
          readTimeout: STREAM_READ_TIMEOUT,
        }),
        functionAssociations: [
          { function: viewerRequest, eventType: FunctionEventType.VIEWER_REQUEST },
        ],
      },
      additionalBehaviors: Object.fromEntries(UPLOAD_PATHS.map((path) => [path, uploads])),
      // The TLS floor applies to our own certificate; *.cloudfront.net's policy is CloudFront's.
      ...(props.alias && {
        domainNames: [props.alias.domainName],
        certificate: props.alias.certificate,
        minimumProtocolVersion: SecurityPolicyProtocol.TLS_V1_2_2021,
      }),
      ...(props.webAclArn && { webAclId: props.webAclArn }),
    });
    this.host = props.alias?.domainName ?? this.distribution.distributionDomainName;
  }
}
