/**
 * The code of the streaming distribution's viewer-request CloudFront Function (runtime
 * cloudfront-js-2.0): it copies the viewer's Authorization and Host into the headers
 * lib/lambda/viewer-headers.ts restores, before origin access control replaces Authorization
 * with its SigV4 signature and the origin request takes the function URL's host. Copies a client
 * sent itself are dropped first, so the function only ever sees what CloudFront copied.
 *
 * Generated from the header names the function side reads, so the two cannot drift apart;
 * test/viewer-headers.test.ts runs it in Node.
 */
import { VIEWER_HEADERS } from '../lib/lambda/viewer-headers.ts';

export function viewerRequestCode(): string {
  const copies = JSON.stringify({
    authorization: VIEWER_HEADERS.authorization,
    host: VIEWER_HEADERS.host,
  });
  return `var COPIES = ${copies};
function handler(event) {
  var request = event.request;
  var headers = request.headers;
  for (var name in COPIES) {
    delete headers[COPIES[name]];
    if (headers[name]) headers[COPIES[name]] = { value: headers[name].value };
  }
  return request;
}
`;
}
