/**
 * The two Lambda front doors with the stack's real handlers behind them: functions/api.ts behind
 * the local API Gateway, functions/api-stream.ts behind the local function URL. Call after
 * startServerlessStack (the handlers' runtime reads the environment it sets on the first
 * invocation); the file's afterAll(stopServerlessProcess) ends the container.
 */
import {
  type ApiGatewayLocal,
  type ApiGatewayLocalOptions,
  type HttpApiHandler,
  startApiGatewayLocal,
} from './api-gateway-local.ts';
import {
  type FunctionUrlLocal,
  type FunctionUrlLocalOptions,
  type StreamingHandler,
  startFunctionUrlLocal,
} from './function-url-local.ts';

/** functions/api.ts (the stack's Api function) behind a local HTTP API. */
export async function startApiFunctionGateway(
  options: Omit<ApiGatewayLocalOptions, 'handler'> = {},
): Promise<ApiGatewayLocal> {
  const { handler } = (await import('../../functions/api.ts')) as { handler: HttpApiHandler };
  return startApiGatewayLocal({ ...options, handler });
}

/** functions/api-stream.ts (the stack's streaming function) behind a local function URL. */
export async function startApiStreamFunctionUrl(
  options: Omit<FunctionUrlLocalOptions, 'handler'> = {},
): Promise<FunctionUrlLocal> {
  const { streamHandler } = (await import('../../functions/api-stream.ts')) as {
    streamHandler: StreamingHandler;
  };
  return startFunctionUrlLocal({ ...options, handler: streamHandler });
}
