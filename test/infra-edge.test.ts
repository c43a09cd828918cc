/**
 * The public fronts in the synthesized template (infra/fronts.ts, edge.ts, edge-waf.ts,
 * custom-domain.ts): no anonymous function URL, CloudFront with origin access control in front of
 * the stream function, the upload paths to the HTTP API, and the optional names and WAF only when
 * the context asks for them, refused when they cannot work. Bundling is skipped: only the
 * template is looked at (test/infra.test.ts bundles and runs the handlers).
 */
import { App } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { describe, expect, it } from 'vitest';
import { STREAM_READ_TIMEOUT, UPLOAD_PATHS } from '../infra/edge.ts';
import type { EdgeSettings } from '../infra/fronts.ts';
import { ImageCacheStack } from '../infra/image-cache-stack.ts';

type Resources = Record<string, { Type: string; Properties: Record<string, unknown> }>;

const CERT_EU =
  'arn:aws:acm:eu-west-1:123456789012:certificate/11111111-2222-3333-4444-555555555555';
const CERT_US =
  'arn:aws:acm:us-east-1:123456789012:certificate/66666666-7777-8888-9999-000000000000';
const ZONE = { hostedZoneId: 'Z0123456789ABCDEFGHIJ', hostedZoneName: 'example.com' };

function synth(edge: EdgeSettings = {}, region = 'eu-west-1'): Template {
  const app = new App({ context: { 'aws:cdk:bundling-stacks': [] } });
  const stack = new ImageCacheStack(app, 'Edge', {
    env: { account: '123456789012', region },
    edge,
  });
  return Template.fromStack(stack);
}

const ofType = (template: Template, type: string) =>
  Object.entries(template.toJSON().Resources as Resources).filter(([, r]) => r.Type === type);

describe('the streaming front', () => {
  const template = synth();

  it('has no function URL anyone may call: the only one is AWS_IAM', () => {
    const urls = ofType(template, 'AWS::Lambda::Url');
    expect(urls).toHaveLength(1);
    for (const [, url] of urls) expect(url.Properties.AuthType).toBe('AWS_IAM');
    template.resourcePropertiesCountIs('AWS::Lambda::Url', { AuthType: 'NONE' }, 0);
    const permissions = ofType(template, 'AWS::Lambda::Permission').map(([, p]) => p.Properties);
    for (const p of permissions) expect(p.Principal).not.toBe('*');
  });

  it('puts CloudFront in front with origin access control signing every request', () => {
    template.hasResourceProperties('AWS::CloudFront::OriginAccessControl', {
      OriginAccessControlConfig: {
        OriginAccessControlOriginType: 'lambda',
        SigningBehavior: 'always',
        SigningProtocol: 'sigv4',
      },
    });
    const [oac] = ofType(template, 'AWS::CloudFront::OriginAccessControl')[0]!;
    const [, distribution] = ofType(template, 'AWS::CloudFront::Distribution')[0]!;
    const config = distribution.Properties.DistributionConfig as {
      Origins: {
        Id: string;
        OriginAccessControlId?: unknown;
        CustomOriginConfig: Record<string, unknown>;
      }[];
      DefaultCacheBehavior: Record<string, unknown>;
      CacheBehaviors: Record<string, unknown>[];
    };
    const signed = config.Origins.find((o) => o.OriginAccessControlId !== undefined)!;
    expect(signed.OriginAccessControlId).toEqual({ 'Fn::GetAtt': [oac, 'Id'] });
    expect(signed.CustomOriginConfig).toMatchObject({
      OriginProtocolPolicy: 'https-only',
      OriginReadTimeout: STREAM_READ_TIMEOUT.toSeconds(),
    });
    expect(config.DefaultCacheBehavior).toMatchObject({
      TargetOriginId: signed.Id,
      ViewerProtocolPolicy: 'https-only',
      AllowedMethods: ['GET', 'HEAD', 'OPTIONS', 'PUT', 'PATCH', 'POST', 'DELETE'],
      // Managed policies: CachingDisabled, AllViewerExceptHostHeader.
      CachePolicyId: '4135ea2d-6df8-44a3-9df3-4b5a84be39ad',
      OriginRequestPolicyId: 'b689b0a8-53d0-40ab-baf2-68738e2966ac',
      FunctionAssociations: [{ EventType: 'viewer-request', FunctionARN: expect.anything() }],
    });
  });

  it('copies the viewer headers in a cloudfront-js-2.0 viewer-request function', () => {
    template.hasResourceProperties('AWS::CloudFront::Function', {
      FunctionConfig: Match.objectLike({ Runtime: 'cloudfront-js-2.0' }),
      FunctionCode: Match.stringLikeRegexp('x-image-cache-authorization'),
    });
  });

  it('sends the paths with request bodies to the HTTP API, which needs no payload hash', () => {
    const [, distribution] = ofType(template, 'AWS::CloudFront::Distribution')[0]!;
    const config = distribution.Properties.DistributionConfig as {
      Origins: { Id: string; DomainName: unknown }[];
      CacheBehaviors: { PathPattern: string; TargetOriginId: string }[];
    };
    expect(config.CacheBehaviors.map((b) => b.PathPattern)).toEqual([...UPLOAD_PATHS]);
    const [apiId] = ofType(template, 'AWS::ApiGatewayV2::Api')[0]!;
    for (const behavior of config.CacheBehaviors) {
      const origin = config.Origins.find((o) => o.Id === behavior.TargetOriginId)!;
      expect(JSON.stringify(origin.DomainName)).toContain(apiId);
    }
  });

  it('makes no custom domain, DNS record or WAF without context', () => {
    for (const type of [
      'AWS::ApiGatewayV2::DomainName',
      'AWS::ApiGatewayV2::ApiMapping',
      'AWS::Route53::RecordSet',
      'AWS::WAFv2::WebACL',
    ]) {
      expect(ofType(template, type)).toEqual([]);
    }
    const [, distribution] = ofType(template, 'AWS::CloudFront::Distribution')[0]!;
    const config = distribution.Properties.DistributionConfig as Record<string, unknown>;
    expect(config.Aliases).toBeUndefined();
    expect(config.WebACLId).toBeUndefined();
  });
});

describe('custom domains', () => {
  const names: EdgeSettings = {
    domainName: 'cache.example.com',
    certificateArn: CERT_EU,
    streamDomainName: 'docker.example.com',
    streamCertificateArn: CERT_US,
  };

  it('gives both fronts their names, with alias records in the hosted zone', () => {
    const template = synth({ ...names, ...ZONE });
    template.hasResourceProperties('AWS::ApiGatewayV2::DomainName', {
      DomainName: 'cache.example.com',
      DomainNameConfigurations: [
        Match.objectLike({ CertificateArn: CERT_EU, EndpointType: 'REGIONAL' }),
      ],
    });
    template.resourceCountIs('AWS::ApiGatewayV2::ApiMapping', 1);
    template.hasResourceProperties('AWS::CloudFront::Distribution', {
      DistributionConfig: Match.objectLike({
        Aliases: ['docker.example.com'],
        ViewerCertificate: Match.objectLike({
          AcmCertificateArn: CERT_US,
          MinimumProtocolVersion: 'TLSv1.2_2021',
        }),
      }),
    });
    const records = ofType(template, 'AWS::Route53::RecordSet').map(([, r]) => r.Properties);
    expect(records.map((r) => `${r.Name} ${r.Type} ${r.HostedZoneId}`).sort()).toEqual([
      `cache.example.com. A ${ZONE.hostedZoneId}`,
      `docker.example.com. A ${ZONE.hostedZoneId}`,
      `docker.example.com. AAAA ${ZONE.hostedZoneId}`,
    ]);
    const outputs = template.toJSON().Outputs as Record<string, { Value: unknown }>;
    expect(JSON.stringify(outputs.DockerHost?.Value)).toBe('"tcp://cache.example.com:443"');
    expect(JSON.stringify(outputs.StreamDockerHost?.Value)).toBe('"tcp://docker.example.com:443"');
    expect(outputs.ApiDomainTarget).toBeUndefined();
  });

  it('without a zone, names the targets for records made elsewhere', () => {
    const template = synth(names);
    expect(ofType(template, 'AWS::Route53::RecordSet')).toEqual([]);
    const outputs = template.toJSON().Outputs as Record<string, unknown>;
    expect(outputs.ApiDomainTarget).toBeDefined();
    expect(outputs.StreamDomainTarget).toBeDefined();
  });

  it('refuses a stream certificate outside us-east-1, and halves of a pair', () => {
    expect(() =>
      synth({ streamDomainName: 'docker.example.com', streamCertificateArn: CERT_EU }),
    ).toThrow(/streamCertificateArn: .* must be an ACM certificate in us-east-1/);
    expect(() => synth({ domainName: 'cache.example.com' })).toThrow(
      /domainName and certificateArn: give both or neither/,
    );
    expect(() => synth(ZONE)).toThrow(/hostedZoneId: give domainName or streamDomainName/);
  });
});

describe('WAF', () => {
  it('makes a CLOUDFRONT web ACL with a rate rule per address, in us-east-1', () => {
    const template = synth({ wafRateLimit: 500 }, 'us-east-1');
    template.hasResourceProperties('AWS::WAFv2::WebACL', {
      Scope: 'CLOUDFRONT',
      DefaultAction: { Allow: {} },
      Rules: [
        Match.objectLike({
          Action: { Block: {} },
          Statement: {
            RateBasedStatement: { Limit: 500, AggregateKeyType: 'IP', EvaluationWindowSec: 300 },
          },
        }),
      ],
    });
    const [acl] = ofType(template, 'AWS::WAFv2::WebACL')[0]!;
    template.hasResourceProperties('AWS::CloudFront::Distribution', {
      DistributionConfig: Match.objectLike({ WebACLId: { 'Fn::GetAtt': [acl, 'Arn'] } }),
    });
  });

  it('refuses to make one outside us-east-1, and says what to do instead', () => {
    expect(() => synth({ wafRateLimit: 500 }, 'eu-west-1')).toThrow(
      /wafRateLimit: a web ACL for CloudFront can only be made in us-east-1, and this stack is in eu-west-1.*webAclArn/,
    );
  });

  it('attaches an existing web ACL anywhere, and refuses both at once', () => {
    const arn = 'arn:aws:wafv2:us-east-1:123456789012:global/webacl/edge/abc';
    const template = synth({ webAclArn: arn });
    expect(ofType(template, 'AWS::WAFv2::WebACL')).toEqual([]);
    template.hasResourceProperties('AWS::CloudFront::Distribution', {
      DistributionConfig: Match.objectLike({ WebACLId: arn }),
    });
    expect(() => synth({ webAclArn: arn, wafRateLimit: 500 }, 'us-east-1')).toThrow(
      /give one, not both/,
    );
  });
});
