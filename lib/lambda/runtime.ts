/**
 * The composition root of the Lambda handlers: built once per container, on the first
 * invocation, from the function's environment (IMAGE_CACHE_BACKEND=aws, IMAGE_CACHE_BUCKET,
 * IMAGE_CACHE_TABLE, IMAGE_CACHE_REGISTRIES, ...), exactly as `serve --backend aws` reads it.
 * Later invocations of a warm container reuse the clients, connections and caches.
 */
import { type Composition, composeAws } from '../composition.ts';
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

export function lambdaRuntime(env: NodeJS.ProcessEnv = process.env): Promise<LambdaRuntime> {
  pending ??= build(env).catch((error: unknown) => {
    // Let the next invocation try again (and log again) rather than cache a failure.
    pending = undefined;
    throw error;
  });
  return pending;
}

async function build(env: NodeJS.ProcessEnv): Promise<LambdaRuntime> {
  const config = parseServeArgs([], env);
  if (config.backend !== 'aws') {
    throw new ConfigError(
      'the Lambda handlers need IMAGE_CACHE_BACKEND=aws with IMAGE_CACHE_BUCKET and IMAGE_CACHE_TABLE',
    );
  }
  // Behind a public endpoint there is no loopback to trust: tokens always, whatever the env says.
  const composition = await composeAws({ ...config, requireAuth: true });
  await composition.operations.warnOfAnonymousDockerHub();
  return {
    composition,
    router: createRouter(composition.context),
    invocation: new InvocationMetrics(composition.context.metrics),
  };
}
