/**
 * The watch schedule on AWS (EventBridge, every minute): one pass over the watched tags
 * (lib/watch/watcher.ts). Each due tag is revalidated with a manifest HEAD; one that moved gets
 * a pull job, which the job queue hands to the worker, so this function never downloads an
 * image. Claims, pauses and budgets live in the table, so an invocation that overlaps the last
 * one, or dies halfway, neither checks a tag twice nor loses one.
 */
import type { RemainingTime } from '../lib/lambda/http-api-adapter.ts';
import { flushStats, lambdaRuntime } from '../lib/lambda/runtime.ts';

export async function handler(_event?: unknown, context?: RemainingTime) {
  const { composition, invocation } = await lambdaRuntime();
  const remainingMs = context ? () => context.getRemainingTimeInMillis() : undefined;
  const report = await composition.operations
    .checkWatches(remainingMs)
    .finally(() => invocation.publish());
  await flushStats();
  if (report.due > 0) console.log(JSON.stringify({ message: 'watch pass finished', report }));
  return report;
}
