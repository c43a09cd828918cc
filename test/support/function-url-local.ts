/**
 * A local stand-in for a Lambda function URL with InvokeMode RESPONSE_STREAM in front of a
 * streaming handler running in this process: each HTTP request on 127.0.0.1 becomes a payload
 * 2.0 event, the handler writes to a response stream this harness owns, and what it writes goes
 * to the client as it arrives: the HTTP integration prelude (JSON status and headers, then
 * eight NUL bytes) becomes the status line and headers, the rest the chunked body. It enforces
 * what the real front door enforces:
 *   - a request payload (the serialized event, so base64 counts) over 6 MB: 413 with Lambda's
 *     RequestEntityTooLargeException body, the handler never invoked;
 *   - a response over 200 MB: cut (the connection is dropped past the cap);
 *   - after the first 6 MB, a bandwidth of about 2 MB/s (tests may raise it);
 *   - the function timeout: the stream is cut (or 502 if nothing was sent yet).
 * Stream bytes written without the integration content type are a plain 200 body, as Lambda
 * treats them. See lambda-http-event.ts for the parts shared with api-gateway-local.ts.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { APIGatewayProxyEventV2, StreamifyHandler } from 'aws-lambda';
import type { Answer, LocalFrontDoor, RequestTarget } from './lambda-http-event.ts';
import {
  EVENT_ORIGINS,
  jsonAnswer,
  LAMBDA_REQUEST_LIMIT,
  lambdaContext,
  listenLocal,
  receiveEvent,
  refuseBody,
  requestTarget,
  writeBuffered,
} from './lambda-http-event.ts';
import { type CutReason, ResponseSink } from './response-sink.ts';

/** What `awslambda.streamifyResponse` takes, as the types of the runtime describe it. */
export type StreamingHandler = StreamifyHandler<APIGatewayProxyEventV2, void>;

// Lambda documents the streamed-response cap as 200 MB, in decimal megabytes.
export const STREAMED_RESPONSE_CAP = 200_000_000;
export const UNTHROTTLED_BYTES = 6 * 1024 * 1024;
export const STREAM_BYTES_PER_SECOND = 2 * 1024 * 1024;
export const MAX_FUNCTION_TIMEOUT_MS = 15 * 60_000;

export interface FunctionUrlLocalOptions {
  handler: StreamingHandler;
  /** The function's timeout (default the maximum, 15 min). */
  timeoutMs?: number;
  /** Lowered or raised by tests that exercise the limits cheaply. */
  requestLimit?: number;
  responseCap?: number;
  unthrottledBytes?: number;
  bytesPerSecond?: number;
  /** Called with the first body bytes of a response as they go to the client. */
  onFirstBody?: (record: StreamInvocationRecord, bytes: Buffer) => void;
}

export interface StreamInvocationRecord extends RequestTarget {
  /** The status the client received (the prelude's, or the front door's own). */
  status: number;
  /** False when the front door answered on its own (request too large). */
  invoked: boolean;
  /** Milliseconds from the request, when the first body byte went to the client. */
  firstBodyByteMs?: number;
  /** ... when the handler's promise settled. */
  handlerSettledMs?: number;
  /** ... when the response ended (or was cut). */
  endMs?: number;
  bodyBytes: number;
  /** Why the response was cut short, if it was. */
  cut?: CutReason;
}

/** Its invocations are recorded as they arrive and filled in while they run. */
export type FunctionUrlLocal = LocalFrontDoor<StreamInvocationRecord>;

export async function startFunctionUrlLocal(
  options: FunctionUrlLocalOptions,
): Promise<FunctionUrlLocal> {
  const requestLimit = options.requestLimit ?? LAMBDA_REQUEST_LIMIT;
  const timeoutMs = options.timeoutMs ?? MAX_FUNCTION_TIMEOUT_MS;
  const invocations: StreamInvocationRecord[] = [];

  const server = createServer((req, res) => {
    const record: StreamInvocationRecord = {
      ...requestTarget(req),
      status: 0,
      invoked: false,
      bodyBytes: 0,
    };
    invocations.push(record);
    serve(req, res, record).catch((error: unknown) => {
      console.error('function-url-local:', error);
      if (!res.headersSent) answerAlone(res, record, lambdaMessage(502, 'Internal Server Error'));
      else res.destroy();
    });
  });

  async function serve(
    req: IncomingMessage,
    res: ServerResponse,
    record: StreamInvocationRecord,
  ): Promise<void> {
    const tooLarge = () =>
      answerAlone(
        res,
        record,
        refuseBody(
          req,
          lambdaMessage(
            413,
            `Request must be smaller than ${requestLimit} bytes for the InvokeFunction operation`,
            { 'x-amzn-errortype': 'RequestEntityTooLargeException' },
          ),
        ),
      );
    const event = await receiveEvent(
      req,
      record,
      EVENT_ORIGINS.functionUrl,
      requestLimit,
      tooLarge,
    );
    if (!event) return;
    // Lambda measures the invocation payload: the event, with a binary body in base64.
    if (Buffer.byteLength(JSON.stringify(event)) > requestLimit) return tooLarge();

    record.invoked = true;
    const started = performance.now();
    const sink = new ResponseSink(res, {
      cap: options.responseCap ?? STREAMED_RESPONSE_CAP,
      unthrottledBytes: options.unthrottledBytes ?? UNTHROTTLED_BYTES,
      bytesPerSecond: options.bytesPerSecond ?? STREAM_BYTES_PER_SECOND,
      onHead: (status) => {
        record.status = status;
      },
      onBody: (bytes) => {
        if (record.firstBodyByteMs === undefined) {
          record.firstBodyByteMs = performance.now() - started;
          options.onFirstBody?.(record, bytes);
        }
        record.bodyBytes += bytes.length;
      },
      onEnd: (cut) => {
        record.endMs = performance.now() - started;
        if (cut) record.cut ??= cut;
      },
    });
    const timer = setTimeout(() => sink.abort('timeout'), timeoutMs);
    // The handler keeps running after a timeout here (a real one is frozen); its stream fails.
    try {
      await options.handler(event, sink.asRuntimeStream(), lambdaContext(timeoutMs));
      // The runtime ends a stream the handler left open once its promise resolves.
      if (!sink.writableEnded && !sink.destroyed) sink.end();
    } catch (error) {
      console.error('function-url-local: the handler threw', error);
      sink.abort('handler-error');
    } finally {
      record.handlerSettledMs = performance.now() - started;
      clearTimeout(timer);
    }
  }

  return listenLocal(server, invocations);
}

/** Lambda's own error bodies say `Message`, capitalised, unlike API Gateway's. */
function lambdaMessage(
  status: number,
  message: string,
  headers: Record<string, string> = {},
): Answer {
  return jsonAnswer(status, { Message: message }, headers);
}

function answerAlone(res: ServerResponse, record: StreamInvocationRecord, answer: Answer): void {
  record.status = answer[0];
  writeBuffered(res, answer);
}
