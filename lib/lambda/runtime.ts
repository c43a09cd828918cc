/**
 * The composition root of the Lambda handlers: built once per container, on the first
 * invocation, from the function's environment (IMAGE_CACHE_BACKEND=aws, IMAGE_CACHE_BUCKET,
 * IMAGE_CACHE_TABLE, IMAGE_CACHE_REGISTRIES, ...), exactly as `serve --backend aws` reads it.
 * Later invocations of a warm container reuse the clients, connections and caches.
 */
import { type Composition, composeAws, type Overrides } from '../composition.ts';
import { ConfigError, parseServeArgs } from '../config.ts';
import { createRouter, type Router } from '../engine/router.ts';
import { InvocationMetrics } from './emf.ts';

export interface LambdaRuntime {
  composition: Composition;
  router: Router;
  /** Writes each invocation's counts as one EMF line (handlers wrap their work in it). */
  invocation: InvocationMetrics;
}

let pending: Promise<LambdaRuntime> | undefined;

/** `overrides` count only for the call that builds the runtime (tests prime it with them). */
export function lambdaRuntime(
  env: NodeJS.ProcessEnv = process.env,
  overrides: Overrides = {},
): Promise<LambdaRuntime> {
  pending ??= build(env, overrides).catch((error: unknown) => {
    // Let the next invocation try again (and log again) rather than cache a failure.
    pending = undefined;
    throw error;
  });
  return pending;
}

async function build(env: NodeJS.ProcessEnv, overrides: Overrides): Promise<LambdaRuntime> {
  const config = parseServeArgs([], env);
  if (config.backend !== 'aws') {
    throw new ConfigError(
      'the Lambda handlers need IMAGE_CACHE_BACKEND=aws with IMAGE_CACHE_BUCKET and IMAGE_CACHE_TABLE',
    );
  }
  // Behind a public endpoint there is no loopback to trust: tokens always, whatever the env says.
  const composition = await composeAws({ ...config, requireAuth: true }, overrides);
  await composition.operations.warnOfAnonymousDockerHub();
  return {
    composition,
    router: createRouter(composition.context),
    invocation: new InvocationMetrics(composition.context.metrics),
  };
}

/**
 * The end of an invocation: what this container counted goes into the hourly history before
 * Lambda may freeze it (one UpdateItem, none when nothing changed). A failure is logged, not
 * thrown: the answer is already made, and the recorder keeps the delta for the next invocation.
 */
export async function flushStats(): Promise<void> {
  const runtime = await pending?.catch(() => undefined);
  await runtime?.composition.operations.flushStats().catch((error: unknown) => {
    console.error(
      'image-cache: writing the stats history failed (kept for the next invocation):',
      error,
    );
  });
}
