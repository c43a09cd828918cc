/** Every Engine API and /cache endpoint, behind the HTTP API's $default route. */
import type {
  APIGatewayProxyEventV2,
  APIGatewayProxyStructuredResultV2,
  Context,
} from 'aws-lambda';
import {
  httpApiDeadline,
  saveRedirectUrl,
  toHttpApiResult,
  toHttpRequest,
} from '../lib/lambda/http-api-adapter.ts';
import { logRequest, requestEntry } from '../lib/lambda/request-log.ts';
import { BINARY_BODY_ROOM } from '../lib/lambda/response-limits.ts';
import { flushStats, lambdaRuntime } from '../lib/lambda/runtime.ts';

export async function handler(
  event: APIGatewayProxyEventV2,
  context: Context,
): Promise<APIGatewayProxyStructuredResultV2> {
  const startedAt = Date.now();
  // Taken before the runtime is built: a cold start spends the same 30 s.
  const deadline = httpApiDeadline(context);
  const { router, invocation } = await lambdaRuntime();
  try {
    const saveRedirect = saveRedirectUrl(event);
    const response = await router(toHttpRequest(event, deadline, BINARY_BODY_ROOM.buffered));
    const result = await toHttpApiResult(response, saveRedirect ? { saveRedirect } : {});
    const answer = { status: result.statusCode ?? 200, caller: response.caller };
    logRequest(requestEntry(event, 'http-api', answer, startedAt));
    return result;
  } finally {
    // After the body was buffered: a save's bytes are counted once its last byte was read.
    await invocation.publish();
    await flushStats();
  }
}
