/**
 * The viewer's Authorization and Host, back where the routes look for them, on requests that
 * reached the streaming function through CloudFront.
 *
 * CloudFront's origin access control signs each origin request with SigV4 in the Authorization
 * header, which replaces the client's `Authorization: Bearer <token>`, and the origin request
 * carries the function URL's host, not the name the client used (which the save redirect and
 * the registry challenge must name). So a viewer-request CloudFront Function
 * (infra/viewer-request-function.ts) copies both into headers of our own, and this puts them
 * back before the request is routed.
 *
 * Why the copies can be trusted: the function URL's auth type is AWS_IAM, so only requests
 * signed for this account reach it, which means CloudFront for this distribution (the only
 * principal granted lambda:InvokeFunctionUrl) or an IAM principal of the account; and the
 * CloudFront Function overwrites whatever a client put in these headers. The copies are
 * honoured only on a request CloudFront forwarded (it always adds x-amz-cf-id); even a forged
 * copy could only present a token the sender holds, which the router checks like any other.
 */
import type { APIGatewayProxyEventV2 } from 'aws-lambda';

/** Where the CloudFront Function keeps the viewer's headers (lower case, as events carry them). */
export const VIEWER_HEADERS = {
  authorization: 'x-image-cache-authorization',
  host: 'x-image-cache-host',
} as const;

/** CloudFront adds its request id to every request it sends to an origin. */
const CLOUDFRONT_REQUEST_ID = 'x-amz-cf-id';

export function cameThroughCloudFront(event: APIGatewayProxyEventV2): boolean {
  return event.headers?.[CLOUDFRONT_REQUEST_ID] !== undefined;
}

/**
 * The event as the viewer sent it: Authorization and Host from the copies, the copies removed.
 * The SigV4 Authorization is dropped even without a copy: it is CloudFront's, not a token, and
 * the router must answer "authentication required" rather than judge it. Events that did not
 * come through CloudFront are returned as they are.
 */
export function restoreViewerHeaders(event: APIGatewayProxyEventV2): APIGatewayProxyEventV2 {
  if (!cameThroughCloudFront(event)) return event;
  const {
    [VIEWER_HEADERS.authorization]: authorization,
    [VIEWER_HEADERS.host]: host,
    authorization: _signature,
    ...headers
  } = event.headers;
  return {
    ...event,
    headers: {
      ...headers,
      ...(authorization !== undefined && { authorization }),
      ...(host !== undefined && { host }),
    },
  };
}
