/**
 * The public names of the two fronts, built around what the stack already has (the stream
 * function, the HTTP API and its stage): the CloudFront front of the stream function (edge.ts),
 * its optional WAF (edge-waf.ts), and optional names of our own for both (custom-domain.ts).
 * One call from the stack, so its own file changes little.
 */
import type { IHttpApi, IHttpStage } from 'aws-cdk-lib/aws-apigatewayv2';
import type { IFunction } from 'aws-cdk-lib/aws-lambda';
import type { Construct } from 'constructs';
import {
  type CustomDomainSettings,
  checkCustomDomains,
  customDomains,
  streamAlias,
} from './custom-domain.ts';
import { StreamEdge } from './edge.ts';
import { type EdgeWafSettings, edgeWebAcl } from './edge-waf.ts';

/** Everything about the fronts that comes from context (infra/app.ts). */
export type EdgeSettings = CustomDomainSettings & EdgeWafSettings;

export interface FrontsInput {
  streamFunction: IFunction;
  httpApi: IHttpApi;
  stage: IHttpStage;
  /** The HTTP API's execute-api host. */
  httpApiHost: string;
}

export interface PublicFronts {
  edge: StreamEdge;
  /** The API's host for clients: its custom domain, or the execute-api host. */
  apiHost: string;
  /** The streaming front's host: its alias, or the distribution's own name. */
  streamHost: string;
}

export function publicFronts(
  scope: Construct,
  input: FrontsInput,
  settings: EdgeSettings = {},
): PublicFronts {
  checkCustomDomains(settings);
  const alias = streamAlias(scope, settings);
  const webAclArn = edgeWebAcl(scope, settings);
  const edge = new StreamEdge(scope, 'StreamEdge', {
    streamFunction: input.streamFunction,
    httpApiHost: input.httpApiHost,
    ...(alias && { alias }),
    ...(webAclArn && { webAclArn }),
  });
  const apiDomain = customDomains(scope, settings, {
    httpApi: input.httpApi,
    stage: input.stage,
    distribution: edge.distribution,
  });
  return { edge, apiHost: apiDomain ?? input.httpApiHost, streamHost: edge.host };
}
