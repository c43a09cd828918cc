/**
 * A stand-in for Lambda's Invoke API on 127.0.0.1, enough for `@aws-sdk/client-lambda` with
 * AWS_ENDPOINT_URL_LAMBDA pointing here: `POST /2015-03-31/functions/{name}/invocations` runs
 * the named handler in this process. `X-Amz-Invocation-Type: Event` answers 202 at once and
 * runs the handler in the background, as Lambda's asynchronous invocation does; otherwise the
 * handler's result is the 200 answer. Every invocation is recorded for tests to count.
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

// biome-ignore lint/suspicious/noExplicitAny: handlers take whatever event their function takes
export type LambdaHandler = (event: any) => Promise<unknown>;

export interface Invocation {
  functionName: string;
  type: 'Event' | 'RequestResponse';
  payload: unknown;
  /** The handler's result, or the error it threw, once it ended. */
  outcome?: { result?: unknown; error?: unknown };
}

export interface LambdaLocal {
  /** `http://127.0.0.1:<port>`: the value for AWS_ENDPOINT_URL_LAMBDA. */
  readonly endpoint: string;
  readonly invocations: Invocation[];
  /** Resolves when every background (Event) invocation has ended. */
  idle(): Promise<void>;
  close(): Promise<void>;
}

const INVOKE_PATH = /^\/2015-03-31\/functions\/([^/]+)\/invocations$/;

export async function startLambdaLocal(
  functions: Record<string, LambdaHandler>,
): Promise<LambdaLocal> {
  const invocations: Invocation[] = [];
  const running = new Set<Promise<void>>();

  const run = async (invocation: Invocation, handler: LambdaHandler) => {
    try {
      invocation.outcome = { result: await handler(invocation.payload) };
    } catch (error) {
      invocation.outcome = { error };
    }
  };

  const server: Server = createServer((req, res) => {
    void (async () => {
      const match = INVOKE_PATH.exec(new URL(req.url ?? '/', 'http://x').pathname);
      const functionName = match ? decodeURIComponent(match[1]!) : '';
      const handler = functions[functionName];
      if (req.method !== 'POST' || !handler) {
        res.writeHead(404, {
          'content-type': 'application/json',
          'x-amzn-errortype': 'ResourceNotFoundException',
        });
        res.end(JSON.stringify({ Type: 'User', message: `Function not found: ${functionName}` }));
        return;
      }
      const body = await readBody(req);
      const type = req.headers['x-amz-invocation-type'] === 'Event' ? 'Event' : 'RequestResponse';
      const invocation: Invocation = {
        functionName,
        type,
        payload: body.length > 0 ? JSON.parse(body.toString('utf8')) : {},
      };
      invocations.push(invocation);
      if (type === 'Event') {
        const done = run(invocation, handler).finally(() => running.delete(done));
        running.add(done);
        res.writeHead(202, { 'x-amzn-requestid': `local-${invocations.length}` });
        res.end();
        return;
      }
      await run(invocation, handler);
      const failed = invocation.outcome && 'error' in invocation.outcome;
      res.writeHead(200, {
        'content-type': 'application/json',
        ...(failed && { 'x-amz-function-error': 'Unhandled' }),
      });
      res.end(
        JSON.stringify(
          failed
            ? { errorMessage: String((invocation.outcome?.error as Error)?.message) }
            : (invocation.outcome?.result ?? null),
        ),
      );
    })().catch((error: unknown) => {
      res.writeHead(500);
      res.end(String(error));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const idle = async () => {
    while (running.size > 0) await Promise.all([...running]);
  };
  return {
    endpoint: `http://127.0.0.1:${port}`,
    invocations,
    idle,
    async close() {
      await idle();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}
