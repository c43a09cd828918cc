/**
 * A local stand-in for an API Gateway HTTP API ($default route, Lambda proxy integration,
 * payload format 2.0) in front of a handler running in this process: each HTTP request on
 * 127.0.0.1 becomes the event API Gateway would deliver, and the handler's structured result
 * becomes the HTTP answer. It enforces what the real front door enforces, with its own bodies:
 *   - request payloads over 10 MB: 413 {"message":"Request Entity Too Large"}, the handler is
 *     never invoked (the body is not even read past the limit);
 *   - an event over Lambda's 6 MB request limit (the body travels in it, binary ones base64):
 *     413 {"message":"Request Too Long"}, the handler is never invoked;
 *   - the 30 s integration timeout: 503 {"message":"Service Unavailable"};
 *   - a serialized result over Lambda's 6 MB: 502 {"message":"Internal Server Error"} (the
 *     invocation fails), and a handler that throws: 500 with the same body.
 * Responses are buffered, as with a non-streaming Lambda: nothing reaches the client before
 * the handler returns.
 *
 * The handler is imported by the caller after the function's environment is in process.env
 * (lib/lambda/runtime.ts reads it on the first invocation), so one process is one container.
 */
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage } from 'node:http';
import type { APIGatewayProxyEventV2, APIGatewayProxyResultV2, Context } from 'aws-lambda';
import {
  type Answer,
  EVENT_ORIGINS,
  jsonAnswer,
  LAMBDA_REQUEST_LIMIT,
  type LocalFrontDoor,
  lambdaContext,
  listenLocal,
  type RequestTarget,
  receiveEvent,
  refuseBody,
  requestTarget,
  writeBuffered,
} from './lambda-http-event.ts';

export type HttpApiHandler = (
  event: APIGatewayProxyEventV2,
  context: Context,
) => Promise<APIGatewayProxyResultV2>;

/** HTTP API quotas: https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-quotas.html */
export const API_GATEWAY_PAYLOAD_LIMIT = 10 * 1024 * 1024;
export const API_GATEWAY_TIMEOUT_MS = 30_000;
/** A buffered (RequestResponse) Lambda invocation's result, serialized. */
export const LAMBDA_RESULT_LIMIT = 6 * 1024 * 1024;

export interface ApiGatewayLocalOptions {
  handler: HttpApiHandler;
  /** Lowered by tests that exercise the limits cheaply. */
  payloadLimit?: number;
  timeoutMs?: number;
  resultLimit?: number;
  eventLimit?: number;
  /** The function's own timeout, which its context counts down (the stack's Api function). */
  functionTimeoutMs?: number;
}

export interface InvocationRecord extends RequestTarget {
  /** The status the client received (a gateway answer or the handler's). */
  status: number;
  /** False when the gateway answered on its own (payload too large). */
  invoked: boolean;
  ms: number;
}

/** Its invocations are recorded as they are answered. */
export type ApiGatewayLocal = LocalFrontDoor<InvocationRecord>;

export async function startApiGatewayLocal(
  options: ApiGatewayLocalOptions,
): Promise<ApiGatewayLocal> {
  const payloadLimit = options.payloadLimit ?? API_GATEWAY_PAYLOAD_LIMIT;
  const timeoutMs = options.timeoutMs ?? API_GATEWAY_TIMEOUT_MS;
  const resultLimit = options.resultLimit ?? LAMBDA_RESULT_LIMIT;
  const eventLimit = options.eventLimit ?? LAMBDA_REQUEST_LIMIT;
  const functionTimeoutMs = options.functionTimeoutMs ?? timeoutMs;
  const invocations: InvocationRecord[] = [];

  const server = createServer((req, res) => {
    const started = performance.now();
    const record: InvocationRecord = {
      ...requestTarget(req),
      status: 0,
      invoked: false,
      ms: 0,
    };
    const answer = ([status, headers, body]: Answer) => {
      record.status = status;
      record.ms = performance.now() - started;
      invocations.push(record);
      writeBuffered(res, [
        status,
        { ...headers, 'apigw-requestid': randomBytes(10).toString('base64url') },
        body,
      ]);
    };
    serve(req, record, answer).catch((error: unknown) => {
      console.error('api-gateway-local:', error);
      if (!res.headersSent) answer(gatewayMessage(500, 'Internal Server Error'));
      else res.destroy();
    });
  });

  async function serve(
    req: IncomingMessage,
    record: InvocationRecord,
    answer: (answer: Answer) => void,
  ): Promise<void> {
    const event = await receiveEvent(req, record, EVENT_ORIGINS.apiGateway, payloadLimit, () =>
      answer(refuseBody(req, gatewayMessage(413, 'Request Entity Too Large'))),
    );
    if (!event) return;
    if (Buffer.byteLength(JSON.stringify(event)) > eventLimit) {
      // Lambda refuses the invocation; API Gateway passes that on as a 413 of its own.
      answer(gatewayMessage(413, 'Request Too Long'));
      return;
    }
    record.invoked = true;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), timeoutMs);
    });
    let result: APIGatewayProxyResultV2 | 'timeout';
    try {
      // The handler keeps running after a timeout (as a Lambda does until its own timeout);
      // only the client stops waiting.
      result = await Promise.race([
        options.handler(event, lambdaContext(functionTimeoutMs)),
        timedOut,
      ]);
    } catch (error) {
      console.error('api-gateway-local: the handler threw', error);
      answer(gatewayMessage(500, 'Internal Server Error'));
      return;
    } finally {
      clearTimeout(timer);
    }
    if (result === 'timeout') {
      answer(gatewayMessage(503, 'Service Unavailable'));
      return;
    }
    const serialized = JSON.stringify(result) ?? '';
    if (Buffer.byteLength(serialized) > resultLimit) {
      // Lambda refuses the result (Function.ResponseSizeTooLarge); API Gateway sees a failure.
      answer(gatewayMessage(502, 'Internal Server Error'));
      return;
    }
    answer(fromResult(result));
  }

  return listenLocal(server, invocations);
}

function gatewayMessage(status: number, message: string): Answer {
  return jsonAnswer(status, { message });
}

/**
 * Payload 2.0: a result with a statusCode is used as given; anything else (a string, an
 * object without statusCode) is a 200 JSON body.
 */
function fromResult(result: APIGatewayProxyResultV2): Answer {
  if (typeof result !== 'object' || result === null || !('statusCode' in result)) {
    const body = typeof result === 'string' ? result : JSON.stringify(result);
    return [200, { 'content-type': 'application/json' }, Buffer.from(body)];
  }
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(result.headers ?? {})) {
    headers[name.toLowerCase()] = String(value);
  }
  // result.cookies (Set-Cookie) are ignored: nothing in the cache sets them.
  const body = Buffer.from(result.body ?? '', result.isBase64Encoded ? 'base64' : 'utf8');
  return [result.statusCode ?? 200, headers, body];
}
