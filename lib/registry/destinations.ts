import { type LookupAddress, type LookupOptions, lookup } from 'node:dns';
import { isIP } from 'node:net';
import { UpstreamError } from '../errors.ts';

/**
 * The registry chooses two URLs we did not configure: the token realm and the blob redirect
 * target (a CDN). Both are checked here so a hostile or compromised registry cannot point the
 * cache at cloud metadata endpoints (SSRF, invariant 7). The operator-configured base URLs are
 * trusted: tests and private registries legitimately live on loopback and private networks.
 */

const BLOCKED_HOSTNAMES = new Set(['metadata.google.internal', 'metadata', 'instance-data']);

function ipv4Blocked(address: string): boolean {
  const [a, b] = address.split('.').map(Number);
  // 169.254.0.0/16 is link-local and holds the AWS/GCP/Azure metadata service;
  // 100.100.100.200 is Alibaba Cloud's; 0.0.0.0/8 reaches the local host on Linux.
  return (a === 169 && b === 254) || address === '100.100.100.200' || a === 0;
}

function ipv6Blocked(address: string): boolean {
  const lower = address.toLowerCase();
  const mapped = /^(?:0{0,4}:){0,5}:?ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(lower);
  if (mapped?.[1]) return ipv4Blocked(mapped[1]);
  // fe80::/10 link-local; fd00:ec2::254 is the AWS metadata service over IPv6.
  return /^fe[89ab][0-9a-f]?:/.test(lower) || lower === 'fd00:ec2::254' || lower === '::';
}

export function isBlockedAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 4) return ipv4Blocked(address);
  if (family === 6) return ipv6Blocked(address);
  return false;
}

/** Throws unless `url` is http(s) and does not name a blocked host or address literal. */
export function assertSafeDestination(url: URL, purpose: string): void {
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new UpstreamError('UPSTREAM_ERROR', `refusing ${purpose} with scheme ${url.protocol}`);
  }
  if (url.username || url.password) {
    throw new UpstreamError('UPSTREAM_ERROR', `refusing ${purpose} that embeds credentials`);
  }
  const host = url.hostname.replace(/^\[|\]$/g, '').toLowerCase();
  if (BLOCKED_HOSTNAMES.has(host) || isBlockedAddress(host)) {
    throw new UpstreamError(
      'UPSTREAM_ERROR',
      `refusing ${purpose} to ${url.host}: address not allowed`,
    );
  }
}

type LookupCallback = (
  err: NodeJS.ErrnoException | null,
  address: string | LookupAddress[],
  family?: number,
) => void;

/**
 * A `dns.lookup` for the socket layer: a name that resolves to a blocked address (DNS
 * rebinding, or a CDN host that points at 169.254.169.254) fails before connecting.
 */
export function guardedLookup(
  hostname: string,
  options: LookupOptions,
  callback: LookupCallback,
): void {
  lookup(hostname, { ...options, all: true }, (err, addresses) => {
    if (err) {
      callback(err, options.all ? [] : '', undefined);
      return;
    }
    const allowed = addresses.filter((entry) => !isBlockedAddress(entry.address));
    if (allowed.length === 0) {
      const blocked = Object.assign(
        new Error(`${hostname} resolves to an address that is not allowed`),
        { code: 'EADDRNOTALLOWED' },
      );
      callback(blocked, options.all ? [] : '', undefined);
      return;
    }
    if (options.all) {
      callback(null, allowed);
      return;
    }
    const first = allowed[0]!;
    callback(null, first.address, first.family);
  });
}
