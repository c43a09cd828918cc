/**
 * What each Lambda front door can carry back, and the one refusal both give when an answer
 * does not fit: a 413 that names the way around it (the S3 export behind a presigned URL),
 * rather than an opaque 502 from the gateway or a stream Lambda cuts off.
 */
import { ImageCacheError } from '../errors.ts';

/** What Lambda accepts as the serialized result of a buffered (not streamed) invocation. */
export const LAMBDA_RESPONSE_LIMIT = 6 * 1024 * 1024;
/**
 * What a response stream (function URL, InvokeMode RESPONSE_STREAM) may send in all. Lambda
 * documents "200 MB" and means decimal megabytes: counting it as MiB would promise 9.7 MB that
 * Lambda cuts off mid-stream.
 */
export const STREAMED_RESPONSE_LIMIT = 200_000_000;

export type FrontDoor = 'buffered' | 'streamed';

/**
 * Binary bytes of one answer each front door carries, with room for its envelope: a buffered
 * body travels base64 (3 bytes in 4) inside the 6 MB result.
 */
export const BINARY_BODY_ROOM: Record<FrontDoor, number> = {
  buffered: Math.floor(((LAMBDA_RESPONSE_LIMIT - 16 * 1024) * 3) / 4),
  streamed: STREAMED_RESPONSE_LIMIT - 16 * 1024,
};

const CARRIER: Record<FrontDoor, string> = {
  buffered: 'a buffered Lambda response behind API Gateway can carry',
  streamed: 'a streamed Lambda response (the function URL) can carry',
};

/** What a buffered-door user can try before S3: the same request on the streaming door. */
const STREAMED_HINT =
  `; the docker CLI saves up to ${STREAMED_RESPONSE_LIMIT / 1e6} MB through the ` +
  'streaming endpoint (the function URL)';

/**
 * The response was larger than this front door can carry. 413 because the content is too
 * large for the transport, not because the server failed; the message says what to do.
 */
export class ResponseTooLargeError extends ImageCacheError {
  constructor(
    bytes: number | undefined,
    limit: number,
    options: { saveRedirect?: string; frontDoor?: FrontDoor } = {},
  ) {
    const frontDoor = options.frontDoor ?? 'buffered';
    const size = bytes === undefined ? 'more than' : `${bytes} bytes, more than`;
    const url = options.saveRedirect ?? 'https://<endpoint>/images/get?names=<image>&redirect=1';
    super(
      'PAYLOAD_TOO_LARGE',
      `the response is ${size} the ${limit} bytes ${CARRIER[frontDoor]}; large saves go through ` +
        `S3 as a presigned download: curl -L -H 'Authorization: Bearer <token>' -o image.tar ` +
        `'${url}' (the docker CLI does not follow redirects), or image-cache save -o image.tar ` +
        `<image>${frontDoor === 'buffered' ? STREAMED_HINT : ''}`,
    );
  }
}
