/**
 * Optional names of our own for both fronts, so CI configurations survive a replaced API or
 * function URL: `domainName` for the HTTP API (a regional custom domain with a certificate in
 * the stack's region) and `streamDomainName` for the streaming distribution (an alias whose
 * certificate must be in us-east-1, where CloudFront reads certificates). With a hosted zone,
 * A and AAAA alias records point the names at the fronts; without one, the outputs name the
 * targets for records made elsewhere. No lookups: the zone is given by id and name, so synth
 * stays offline.
 */
import { CfnOutput, Stack, Token } from 'aws-cdk-lib';
import {
  ApiMapping,
  DomainName,
  type IHttpApi,
  type IHttpStage,
} from 'aws-cdk-lib/aws-apigatewayv2';
import { Certificate, type ICertificate } from 'aws-cdk-lib/aws-certificatemanager';
import type { IDistribution } from 'aws-cdk-lib/aws-cloudfront';
import {
  AaaaRecord,
  ARecord,
  HostedZone,
  type IHostedZone,
  RecordTarget,
} from 'aws-cdk-lib/aws-route53';
import { ApiGatewayv2DomainProperties, CloudFrontTarget } from 'aws-cdk-lib/aws-route53-targets';
import type { Construct } from 'constructs';

export interface CustomDomainSettings {
  /** The HTTP API's name, with `certificateArn` (ACM, in the stack's region). */
  domainName?: string;
  certificateArn?: string;
  /** The streaming distribution's name, with `streamCertificateArn` (ACM, in us-east-1). */
  streamDomainName?: string;
  streamCertificateArn?: string;
  /** A Route 53 zone that holds the names: its id and its name. */
  hostedZoneId?: string;
  hostedZoneName?: string;
}

/** Settings that belong together, checked before anything is built; an Error names the keys. */
export function checkCustomDomains(settings: CustomDomainSettings): void {
  const pair = (a: keyof CustomDomainSettings, b: keyof CustomDomainSettings) => {
    if ((settings[a] === undefined) !== (settings[b] === undefined)) {
      throw new Error(`context ${a} and ${b}: give both or neither`);
    }
  };
  pair('domainName', 'certificateArn');
  pair('streamDomainName', 'streamCertificateArn');
  pair('hostedZoneId', 'hostedZoneName');
  const { streamCertificateArn, hostedZoneId, domainName, streamDomainName } = settings;
  if (streamCertificateArn !== undefined && !Token.isUnresolved(streamCertificateArn)) {
    if (!/^arn:[\w-]+:acm:us-east-1:\d{12}:certificate\/.+$/.test(streamCertificateArn)) {
      throw new Error(
        `context streamCertificateArn: ${streamCertificateArn} must be an ACM certificate in us-east-1 (CloudFront reads certificates only there)`,
      );
    }
  }
  if (hostedZoneId !== undefined && domainName === undefined && streamDomainName === undefined) {
    throw new Error('context hostedZoneId: give domainName or streamDomainName for its records');
  }
}

/** The alias and certificate of the streaming distribution, when one is set. */
export function streamAlias(
  scope: Construct,
  settings: CustomDomainSettings,
): { domainName: string; certificate: ICertificate } | undefined {
  const { streamDomainName, streamCertificateArn } = settings;
  if (streamDomainName === undefined || streamCertificateArn === undefined) return undefined;
  return {
    domainName: streamDomainName,
    certificate: Certificate.fromCertificateArn(scope, 'StreamCertificate', streamCertificateArn),
  };
}

export interface CustomDomainTargets {
  httpApi: IHttpApi;
  stage: IHttpStage;
  distribution: IDistribution;
}

/**
 * The HTTP API's custom domain (mapped to its $default stage at the root) and the records for
 * both names. Answers the API's stable host, when there is one.
 */
export function customDomains(
  scope: Construct,
  settings: CustomDomainSettings,
  targets: CustomDomainTargets,
): string | undefined {
  const zone = hostedZone(scope, settings);
  const stack = Stack.of(scope);
  const { domainName, certificateArn, streamDomainName } = settings;
  if (domainName !== undefined && certificateArn !== undefined) {
    const domain = new DomainName(scope, 'ApiDomain', {
      domainName,
      certificate: Certificate.fromCertificateArn(scope, 'ApiCertificate', certificateArn),
    });
    new ApiMapping(scope, 'ApiDomainMapping', {
      api: targets.httpApi,
      domainName: domain,
      stage: targets.stage,
    });
    const target = RecordTarget.fromAlias(
      new ApiGatewayv2DomainProperties(domain.regionalDomainName, domain.regionalHostedZoneId),
    );
    // A only: a regional API domain answers on IPv4 unless made dual-stack.
    if (zone) new ARecord(scope, 'ApiDomainA', { zone, recordName: domainName, target });
    else {
      new CfnOutput(stack, 'ApiDomainTarget', {
        description: `Point ${domainName} here (CNAME or alias): the API's regional domain`,
        value: domain.regionalDomainName,
      });
    }
  }
  if (streamDomainName !== undefined) {
    const target = RecordTarget.fromAlias(new CloudFrontTarget(targets.distribution));
    if (zone) {
      // CloudFront answers on IPv4 and IPv6 (the distribution has IPv6 on).
      new ARecord(scope, 'StreamDomainA', { zone, recordName: streamDomainName, target });
      new AaaaRecord(scope, 'StreamDomainAaaa', { zone, recordName: streamDomainName, target });
    } else {
      new CfnOutput(stack, 'StreamDomainTarget', {
        description: `Point ${streamDomainName} here (CNAME or alias): the streaming distribution`,
        value: targets.distribution.distributionDomainName,
      });
    }
  }
  return domainName;
}

function hostedZone(scope: Construct, settings: CustomDomainSettings): IHostedZone | undefined {
  const { hostedZoneId, hostedZoneName } = settings;
  if (hostedZoneId === undefined || hostedZoneName === undefined) return undefined;
  return HostedZone.fromHostedZoneAttributes(scope, 'HostedZone', {
    hostedZoneId,
    zoneName: hostedZoneName,
  });
}
