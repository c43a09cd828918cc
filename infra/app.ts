/**
 * The CDK app: `npx cdk synth` / `npx cdk deploy`. Settings come from context (`-c key=value`
 * or cdk.json), never from lookups, so synth needs neither credentials nor the network.
 */
import { App } from 'aws-cdk-lib';
import { MIN_WAF_RATE_LIMIT } from './edge-waf.ts';
import type { EdgeSettings } from './fronts.ts';
import { ImageCacheStack } from './image-cache-stack.ts';

const app = new App();
const setting = (key: string): string | undefined => {
  const value: unknown = app.node.tryGetContext(key);
  return typeof value === 'string' && value.trim() !== '' ? value.trim() : undefined;
};
const optional = (key: string) => {
  const value = setting(key);
  return value === undefined ? {} : { [key]: value };
};

/** A whole number of at least `min`, or nothing; anything else stops the synth with its name. */
const count = (key: string, min: number): number | undefined => {
  const value = setting(key);
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value) || Number(value) < min) {
    throw new Error(`context ${key}: ${JSON.stringify(value)} must be a whole number >= ${min}`);
  }
  return Number(value);
};
const concurrency = Object.fromEntries(
  (
    [
      ['api', 'apiConcurrency'],
      ['streamApi', 'streamConcurrency'],
      ['worker', 'workerConcurrency'],
      ['prune', 'pruneConcurrency'],
      ['watch', 'watchConcurrency'],
    ] as const
  ).flatMap(([fn, key]) => {
    const value = count(key, 1);
    return value === undefined ? [] : [[fn, value]];
  }),
);
const monthlyBudgetUsd = count('monthlyBudgetUsd', 1);
// Lambda's memory range, in MB.
const workerMemoryMb = count('workerMemoryMb', 128);
if (workerMemoryMb !== undefined && workerMemoryMb > 10_240) {
  throw new Error(`context workerMemoryMb: ${workerMemoryMb} is more than Lambda's 10240 MB`);
}

// The fronts' names and WAF (infra/fronts.ts checks that what belongs together was given).
const wafRateLimit = count('wafRateLimit', MIN_WAF_RATE_LIMIT);
const edge: EdgeSettings = {
  ...optional('domainName'),
  ...optional('certificateArn'),
  ...optional('streamDomainName'),
  ...optional('streamCertificateArn'),
  ...optional('hostedZoneId'),
  ...optional('hostedZoneName'),
  ...optional('webAclArn'),
  ...(wafRateLimit !== undefined && { wafRateLimit }),
};
// Only a stack given a region can make the WAF web ACL, which CloudFront needs in us-east-1.
const region = setting('region');

new ImageCacheStack(app, setting('stackName') ?? 'ImageCache', {
  description: 'image-cache: a team-wide container image cache (Docker Engine API)',
  ...(region !== undefined && { env: { region } }),
  ...optional('registries'),
  ...optional('maxBytes'),
  ...optional('maxAge'),
  ...optional('backgroundBudget'),
  ...optional('watchMinEvery'),
  ...optional('alarmEmail'),
  ...optional('registrySecretArn'),
  concurrency,
  ...(monthlyBudgetUsd !== undefined && { monthlyBudgetUsd }),
  ...(workerMemoryMb !== undefined && { workerMemoryMb }),
  edge,
});
