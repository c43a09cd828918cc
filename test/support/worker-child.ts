/**
 * One invocation of the real worker function (functions/worker.ts) in a process of its own, as
 * a Lambda container runs it: the event on stdin, the handler's answer as the last line on
 * stdout (after RESULT_MARKER), the function's environment from the parent. A test may SIGKILL
 * the process mid-job, as Lambda ends an invocation that crashed or ran out of time.
 * Run with `node --import tsx test/support/worker-child.ts <remaining ms>`.
 */
import { text } from 'node:stream/consumers';
import { handler } from '../../functions/worker.ts';
import { lambdaRuntime } from '../../lib/lambda/runtime.ts';
import { RESULT_MARKER } from './sqs-event-source.ts';

const ends = Date.now() + Number(process.argv[2]);
const event = JSON.parse(await text(process.stdin));
const result = await handler(event, { getRemainingTimeInMillis: () => ends - Date.now() });
process.stdout.write(`\n${RESULT_MARKER}${JSON.stringify(result)}\n`);
await (await lambdaRuntime()).composition.close();
