/**
 * The scheduled maintenance pass (EventBridge): retention when a budget or age is configured,
 * then a full GC with the grace window. The GC report is stored in the catalog (GET /cache/gc)
 * and logged whole; a run with errors then fails, so the function's Errors alarm goes off.
 */
import { flushStats, lambdaRuntime } from '../lib/lambda/runtime.ts';

export async function handler() {
  const { composition, invocation } = await lambdaRuntime();
  const report = await composition.operations.maintain().finally(() => invocation.publish());
  await flushStats();
  console.log(JSON.stringify({ message: 'maintenance finished', report }));
  if (report.gc.errors.length > 0) {
    throw new Error(`GC ${report.gc.id} finished with ${report.gc.errors.length} errors`);
  }
  return report;
}
