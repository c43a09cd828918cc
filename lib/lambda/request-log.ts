/**
 * One JSON line per request in the function's own log, naming the token that asked (its id and
 * name, never the token or its hash). API Gateway's access log cannot say who asked: the bearer
 * token is checked by the function after the gateway has logged, and the access log format has
 * no variable for it. `requestId` is the gateway's `$context.requestId` (the function URL's own
 * id on the streaming front), so a line here joins the access log line of the same request.
 */
import type { APIGatewayProxyEventV2 } from 'aws-lambda';
import type { Caller } from '../engine/http.ts';

export type FrontDoor = 'http-api' | 'function-url';

export interface RequestLogEntry {
  front: FrontDoor;
  requestId: string;
  method: string;
  /** The path only: the query is the client's business and may be long. */
  path: string;
  status: number;
  /** Until the answer was handed back (streamed: until its last byte was written). */
  latencyMs: number;
  caller?: Caller;
}

export type LogWriter = (line: string) => void;

/** stdout as it is: Lambda stores each line whole, so CloudWatch Logs Insights reads its fields. */
const stdout: LogWriter = (line) => {
  process.stdout.write(`${line}\n`);
};

export function requestEntry(
  event: APIGatewayProxyEventV2,
  front: FrontDoor,
  answer: { status: number; caller?: Caller | undefined },
  startedAt: number,
  now = Date.now(),
): RequestLogEntry {
  return {
    front,
    requestId: event.requestContext.requestId,
    method: event.requestContext.http.method.toUpperCase(),
    path: event.rawPath || '/',
    status: answer.status,
    latencyMs: now - startedAt,
    ...(answer.caller && { caller: answer.caller }),
  };
}

/** The line: flat fields, tokenId and tokenName only when a token was checked. */
export function requestLogLine(entry: RequestLogEntry): string {
  const { caller, ...rest } = entry;
  return JSON.stringify({ log: 'request', ...rest, ...caller });
}

export function logRequest(entry: RequestLogEntry, write: LogWriter = stdout): void {
  write(requestLogLine(entry));
}
