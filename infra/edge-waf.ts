/**
 * An optional WAF web ACL for the streaming distribution: either one that exists (webAclArn), or
 * one made here with a single rate-based rule that blocks a source address past `wafRateLimit`
 * requests in five minutes. A web ACL for CloudFront has scope CLOUDFRONT, which exists only in
 * us-east-1, so this stack makes one only when it is deployed there; elsewhere it refuses, rather
 * than fail at deploy time.
 */
import { Stack, Token } from 'aws-cdk-lib';
import { CfnWebACL } from 'aws-cdk-lib/aws-wafv2';
import type { Construct } from 'constructs';

/** WAF's smallest rate limit, per source address and evaluation window. */
export const MIN_WAF_RATE_LIMIT = 10;
/** The window the limit counts in, in seconds (WAF's default). */
const WINDOW_SECONDS = 300;

export interface EdgeWafSettings {
  /** Requests per source address in five minutes before it is blocked (a web ACL made here). */
  wafRateLimit?: number;
  /** An existing CLOUDFRONT-scope web ACL to attach instead. */
  webAclArn?: string;
}

/** The ARN of the web ACL to attach to the distribution, or nothing. */
export function edgeWebAcl(scope: Construct, settings: EdgeWafSettings): string | undefined {
  const { wafRateLimit, webAclArn } = settings;
  if (wafRateLimit !== undefined && webAclArn !== undefined) {
    throw new Error('context wafRateLimit and webAclArn: give one, not both');
  }
  if (webAclArn !== undefined) return webAclArn;
  if (wafRateLimit === undefined) return undefined;
  if (!Number.isInteger(wafRateLimit) || wafRateLimit < MIN_WAF_RATE_LIMIT) {
    throw new Error(`context wafRateLimit: ${wafRateLimit} must be a whole number >= 10`);
  }
  const region = Stack.of(scope).region;
  if (Token.isUnresolved(region) || region !== 'us-east-1') {
    const where = Token.isUnresolved(region) ? 'no region (set -c region=us-east-1)' : region;
    throw new Error(
      `context wafRateLimit: a web ACL for CloudFront can only be made in us-east-1, and this stack is in ${where}; deploy it to us-east-1, or create the web ACL there and give its ARN as webAclArn`,
    );
  }
  const metric = (name: string) => ({
    cloudWatchMetricsEnabled: true,
    metricName: name,
    sampledRequestsEnabled: true,
  });
  const acl = new CfnWebACL(scope, 'EdgeWebAcl', {
    description: 'image-cache: rate limit per source address on the streaming front',
    scope: 'CLOUDFRONT',
    defaultAction: { allow: {} },
    visibilityConfig: metric('image-cache-edge'),
    rules: [
      {
        name: 'rate-per-address',
        priority: 0,
        action: { block: {} },
        statement: {
          rateBasedStatement: {
            limit: wafRateLimit,
            aggregateKeyType: 'IP',
            evaluationWindowSec: WINDOW_SECONDS,
          },
        },
        visibilityConfig: metric('image-cache-edge-rate'),
      },
    ],
  });
  return acl.attrArn;
}
