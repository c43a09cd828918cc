/** Every Engine API and /cache endpoint, behind the HTTP API's $default route. */
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import { saveRedirectUrl, toHttpApiResult, toHttpRequest } from '../lib/lambda/http-api-adapter.ts';
import { lambdaRuntime } from '../lib/lambda/runtime.ts';

export async function handler(
  event: APIGatewayProxyEventV2,
): Promise<APIGatewayProxyStructuredResultV2> {
  const { router } = await lambdaRuntime();
  const saveRedirect = saveRedirectUrl(event);
  return toHttpApiResult(await router(toHttpRequest(event)), saveRedirect ? { saveRedirect } : {});
}
