/**
 * Every Engine API and /cache endpoint behind a function URL with InvokeMode RESPONSE_STREAM:
 * the front door for the docker CLI (saves up to 200 MB, pulls as long as the function runs).
 */
import type { Writable } from 'node:stream';
import type { APIGatewayProxyEventV2, Context } from 'aws-lambda';
import { saveRedirectUrl, toHttpRequest } from '../lib/lambda/http-api-adapter.ts';
import { logRequest, requestEntry } from '../lib/lambda/request-log.ts';
import { BINARY_BODY_ROOM } from '../lib/lambda/response-limits.ts';
import { flushStats, type LambdaRuntime, lambdaRuntime } from '../lib/lambda/runtime.ts';
import {
  lambdaStreaming,
  type StreamOptions,
  sendStreamed,
  streamDeadline,
} from '../lib/lambda/stream-adapter.ts';
import { restoreViewerHeaders } from '../lib/lambda/viewer-headers.ts';

export type StreamHandler = (
  event: APIGatewayProxyEventV2,
  responseStream: Writable,
  context: Context,
) => Promise<void>;

/** `limit` is for tests that reach the cap without sending 200 MB. */
export function createStreamHandler(options: Pick<StreamOptions, 'limit'> = {}): StreamHandler {
  return async (received, responseStream, context) => {
    const startedAt = Date.now();
    // Behind CloudFront: the client's own Authorization and Host, before anything reads them.
    const event = restoreViewerHeaders(received);
    // Taken before the runtime is built: a cold start spends the same function time.
    const deadline = streamDeadline(context);
    const saveRedirect = saveRedirectUrl(event);
    // Known once built; a runtime that failed to build counted nothing to write.
    let runtime: LambdaRuntime | undefined;
    const answer = await sendStreamed(
      responseStream,
      async () => {
        runtime = await lambdaRuntime();
        return runtime.router(
          toHttpRequest(event, deadline, options.limit ?? BINARY_BODY_ROOM.streamed),
        );
      },
      saveRedirect ? { ...options, saveRedirect } : options,
    );
    logRequest(requestEntry(event, 'function-url', answer, startedAt));
    await runtime?.invocation.publish();
    await flushStats();
  };
}

export const streamHandler = createStreamHandler();

export const handler = lambdaStreaming()?.streamifyResponse(streamHandler) ?? streamHandler;
