import { promises as dns, type LookupAddress, type LookupOptions } from 'node:dns';
import { isIP } from 'node:net';
import ipaddr from 'ipaddr.js';
import { UpstreamError } from '../errors.ts';
import type { Clock } from '../ports/clock.ts';

/**
 * Which addresses the cache may connect to (SSRF, invariant 7). Every address is in one of
 * three classes:
 * - never: link-local 169.254/16 and fe80::/10 (cloud metadata), 100.100.100.200 (Alibaba
 *   metadata), fd00:ec2::254 (AWS metadata over IPv6), unspecified 0/8 and ::, multicast,
 *   broadcast, reserved (240/4, the TEST-NETs, benchmarking, discard...), and the names
 *   metadata.google.internal, metadata and instance-data;
 * - private: loopback 127/8 and ::1, RFC 1918 10/8 172.16/12 192.168/16, CGNAT 100.64/10,
 *   unique-local fc00::/7, the name localhost (and *.localhost), and the unrouted IPv6
 *   documentation and IETF blocks (2001:db8::/32, 3fff::/20, 2001::/23 beyond Teredo);
 * - public: everything else.
 *
 * The rule:
 * 1. The operator's registry base URLs (IMAGE_CACHE_REGISTRIES) are trusted: they may reach
 *    public and private addresses, never the "never" class.
 * 2. URLs the registry chooses (the bearer token realm, redirect targets) may reach public
 *    addresses, and private ones only when that registry is itself private: its base URL is
 *    a private literal, localhost, or a name that resolves only to private addresses
 *    (decided per registry and cached for a minute). Never the "never" class.
 * 3. In a URL the registry chooses, an IPv6 literal that embeds an IPv4 address (mapped
 *    ::ffff:0:0/96, compatible ::/96, NAT64 64:ff9b::/96, 6to4 2002::/16, Teredo 2001::/32)
 *    is refused outright: no registry needs one, and it is the usual way past address
 *    filters (`[::ffff:169.254.169.254]` reaches 169.254.169.254). Elsewhere (a configured
 *    URL, a DNS answer) such an address takes the class of the IPv4 address it embeds.
 * 4. Names are checked when the socket connects: `guardedLookup` applies the same rule to
 *    every address a name resolves to (DNS rebinding). IP literals never reach a lookup
 *    (node connects to them directly), so they are checked on the URL before any request.
 */

/** What an address may be used for; see the rule above. */
export type AddressClass = 'public' | 'private' | 'never';

/** What a registry's URLs may reach besides public addresses: `private` for a private registry. */
export type Reach = 'public' | 'private';

/** How to judge one URL: who chose it, and what its registry may reach. */
export interface UrlRule {
  reach: Reach;
  /** A realm or redirect target rather than the operator's configured registry URL. */
  chosenByRegistry: boolean;
}

/**
 * Which registry a request is for, as far as the rule cares: its configured origin (trusted)
 * and what the URLs it chooses may reach.
 */
export interface RegistryOrigin {
  origin: string;
  reach: Reach;
}

/** The rule for `url` fetched on behalf of `registry`: its own origin is the operator's. */
export function ruleFor(url: URL, registry: RegistryOrigin): UrlRule {
  return url.origin === registry.origin
    ? { reach: 'private', chosenByRegistry: false }
    : { reach: registry.reach, chosenByRegistry: true };
}

/** node:dns `lookup` with `all: true`; tests pass their own to make a name resolve anywhere. */
export type Resolver = (hostname: string, options: LookupOptions) => Promise<LookupAddress[]>;

export const systemResolver: Resolver = (hostname, options) =>
  dns.lookup(hostname, { ...options, all: true });

const NEVER_NAMES = new Set(['metadata.google.internal', 'metadata', 'instance-data']);

// ipaddr.js range names (2.x) -> class. A range missing here (a later ipaddr.js may add one)
// is refused: fail closed. IPv6 ranges that embed an IPv4 address are handled apart.
const SHARED_RANGES: Record<string, AddressClass> = {
  unicast: 'public',
  amt: 'public', // anycast multicast relays
  loopback: 'private',
  unspecified: 'never',
  multicast: 'never',
  linkLocal: 'never',
  benchmarking: 'never',
};

const IPV4_RANGES: Record<string, AddressClass> = {
  ...SHARED_RANGES,
  as112: 'public', // anycast DNS sinks on the public internet
  private: 'private',
  carrierGradeNat: 'private',
  broadcast: 'never',
  reserved: 'never', // 240/4, the TEST-NETs, 192.0.0/24, 198.18/15, 6to4 relays
};

const IPV6_RANGES: Record<string, AddressClass> = {
  ...SHARED_RANGES,
  as112v6: 'public',
  uniqueLocal: 'private',
  // 2001::/23 (IETF assignments), 2001:db8::/32 and 3fff::/20 (documentation) are not routed
  // on the internet; a network that uses them anyway uses them as private space.
  reserved: 'private',
  deprecatedSiteLocal: 'never',
  discard: 'never',
  segmentRouting: 'never',
  deprecatedOrchid: 'never',
  orchid2: 'never',
  droneRemoteIdProtocolEntityTags: 'never',
};

const NEVER_ADDRESSES = new Set(['100.100.100.200', 'fd00:ec2::254']);
const SEVERITY: AddressClass[] = ['public', 'private', 'never'];

export interface AddressInfo {
  /** ipaddr.js's range name, or `ipv4Compatible` for ::a.b.c.d. */
  range: string;
  class: AddressClass;
  /** The IPv4 addresses an IPv6 address carries (mapped, NAT64, 6to4, Teredo, compatible). */
  embedded: string[];
}

/** Classifies an IP address (no brackets); undefined when `address` is not one. */
export function describeAddress(address: string): AddressInfo | undefined {
  if (isIP(address) === 0) return undefined;
  const parsed = ipaddr.parse(address);
  if (parsed.kind() === 'ipv4') {
    const v4 = parsed as ipaddr.IPv4;
    const range = v4.range();
    const cls = NEVER_ADDRESSES.has(v4.toString()) ? 'never' : (IPV4_RANGES[range] ?? 'never');
    return { range, class: cls, embedded: [] };
  }
  // Without the zone (`%eth0`), in RFC 5952 form, to compare with NEVER_ADDRESSES.
  const v6 = new ipaddr.IPv6((parsed as ipaddr.IPv6).parts);
  const { range, embedded } = embeddedIPv4(v6);
  let cls: AddressClass;
  if (embedded.length > 0) {
    cls = worst(embedded.map((a) => describeAddress(a)?.class ?? 'never'));
  } else if (NEVER_ADDRESSES.has(v6.toRFC5952String())) {
    cls = 'never';
  } else {
    cls = IPV6_RANGES[range] ?? 'never';
  }
  return { range, class: cls, embedded };
}

/** The IPv4 addresses inside an IPv6 one, by the layout its prefix defines. */
function embeddedIPv4(v6: ipaddr.IPv6): { range: string; embedded: string[] } {
  const p = v6.parts as [number, number, number, number, number, number, number, number];
  const v4 = (high: number, low: number) => `${high >> 8}.${high & 0xff}.${low >> 8}.${low & 0xff}`;
  const range: string = v6.range();
  switch (range) {
    case 'ipv4Mapped': // ::ffff:a.b.c.d
    case 'rfc6145': // ::ffff:0:a.b.c.d
      return { range, embedded: [v4(p[6], p[7])] };
    case 'rfc6052':
      // 64:ff9b::/96 carries it in the last 32 bits; the local-use 64:ff9b:1::/48 spreads it
      // around the reserved u octet (RFC 6052 section 2.2).
      if (p[2] === 0) return { range, embedded: [v4(p[6], p[7])] };
      return { range, embedded: [v4(p[3], ((p[4] & 0xff) << 8) | (p[5] >> 8))] };
    case '6to4':
      return { range, embedded: [v4(p[1], p[2])] };
    case 'teredo':
      // The server, and the client's public address (stored inverted).
      return { range, embedded: [v4(p[2], p[3]), v4(~p[6] & 0xffff, ~p[7] & 0xffff)] };
  }
  // IPv4-compatible ::a.b.c.d (deprecated); :: and ::1 have ranges of their own.
  if (range === 'unicast' && p.slice(0, 6).every((part) => part === 0)) {
    return { range: 'ipv4Compatible', embedded: [v4(p[6], p[7])] };
  }
  return { range, embedded: [] };
}

function worst(classes: AddressClass[]): AddressClass {
  return classes.reduce<AddressClass>(
    (a, b) => (SEVERITY.indexOf(b) > SEVERITY.indexOf(a) ? b : a),
    'public',
  );
}

/** True for the addresses nothing may reach (metadata services and friends). */
export function isBlockedAddress(address: string): boolean {
  return describeAddress(address)?.class === 'never';
}

function allowed(cls: AddressClass, reach: Reach): boolean {
  return cls === 'public' || (cls === 'private' && reach === 'private');
}

/** `[::1]` -> `::1`, `Metadata.` -> `metadata`: the host as the rule compares it. */
function bareHost(url: URL): string {
  return url.hostname
    .replace(/^\[|\]$/g, '')
    .toLowerCase()
    .replace(/\.$/, '');
}

/** The class of a URL's host when it can be known without DNS; undefined for other names. */
function hostClass(host: string): AddressClass | undefined {
  if (NEVER_NAMES.has(host)) return 'never';
  if (host === 'localhost' || host.endsWith('.localhost')) return 'private';
  return describeAddress(host)?.class;
}

/**
 * Why `url` may not be fetched under `rule`, or undefined when it may (names are checked
 * again when they resolve, by `guardedLookup`).
 */
export function destinationRefusal(url: URL, rule: UrlRule): string | undefined {
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return `scheme ${url.protocol}`;
  if (url.username || url.password) return 'embedded credentials';
  const host = bareHost(url);
  if (rule.chosenByRegistry && (describeAddress(host)?.embedded.length ?? 0) > 0) {
    return 'address not allowed';
  }
  const cls = hostClass(host);
  if (cls !== undefined && !allowed(cls, rule.reach)) return 'address not allowed';
  return undefined;
}

/**
 * Throws unless `url` may be fetched under `rule`; by default the strictest one (a URL a
 * public registry chose).
 */
export function assertSafeDestination(
  url: URL,
  purpose: string,
  rule: UrlRule = { reach: 'public', chosenByRegistry: true },
): void {
  const reason = destinationRefusal(url, rule);
  if (reason === undefined) return;
  if (reason.startsWith('scheme ')) {
    throw new UpstreamError('UPSTREAM_ERROR', `refusing ${purpose} with ${reason}`);
  }
  if (reason === 'embedded credentials') {
    throw new UpstreamError('UPSTREAM_ERROR', `refusing ${purpose} that embeds credentials`);
  }
  throw new UpstreamError('UPSTREAM_ERROR', `refusing ${purpose} to ${url.host}: ${reason}`);
}

/** The code of the error `guardedLookup` fails a connection with. */
export const ADDRESS_NOT_ALLOWED = 'EADDRNOTALLOWED';

type LookupCallback = (
  err: NodeJS.ErrnoException | null,
  address: string | LookupAddress[],
  family?: number,
) => void;

export type LookupFunction = (
  hostname: string,
  options: LookupOptions,
  callback: LookupCallback,
) => void;

/**
 * A `dns.lookup` for the socket layer that keeps only the addresses `reach` allows, so a name
 * that resolves to a forbidden address (DNS rebinding, a CDN name pointing at
 * 169.254.169.254) fails before connecting.
 */
export function guardedLookup(reach: Reach, resolve: Resolver = systemResolver): LookupFunction {
  return (hostname, options, callback) => {
    resolve(hostname, options).then(
      (addresses) => {
        const usable = addresses.filter((entry) =>
          allowed(describeAddress(entry.address)?.class ?? 'never', reach),
        );
        if (usable.length === 0) {
          const listed = addresses.map((entry) => entry.address).join(', ');
          const refused = Object.assign(new Error(`${hostname} resolves to ${listed}`), {
            code: ADDRESS_NOT_ALLOWED,
          });
          callback(refused, options.all ? [] : '', undefined);
          return;
        }
        if (options.all) callback(null, usable);
        else callback(null, usable[0]!.address, usable[0]!.family);
      },
      (err: NodeJS.ErrnoException) => callback(err, options.all ? [] : '', undefined),
    );
  };
}

/**
 * Whether a configured registry is private: its host is a private literal or localhost, or
 * every address its name resolves to is private. Undefined when the name does not resolve;
 * the cache below then counts it as public (the stricter answer) and asks again next time.
 */
export async function registryReach(base: URL, resolve: Resolver): Promise<Reach | undefined> {
  const host = bareHost(base);
  const known = hostClass(host);
  if (known !== undefined) return known === 'private' ? 'private' : 'public';
  let addresses: LookupAddress[];
  try {
    addresses = await resolve(host, {});
  } catch {
    return undefined;
  }
  const classes = addresses.map((entry) => describeAddress(entry.address)?.class ?? 'never');
  return classes.length > 0 && classes.every((cls) => cls === 'private') ? 'private' : 'public';
}

export type ReachDecider = (registry: string, base: URL) => Reach | Promise<Reach>;

/** `registryReach` per registry, for `ttlMs` (DNS answers change, but not every request). */
export class RegistryReachCache {
  readonly #resolve: Resolver;
  readonly #clock: Clock;
  readonly #ttlMs: number;
  readonly #decide: ReachDecider | undefined;
  readonly #entries = new Map<string, { reach: Promise<Reach>; until: number }>();

  constructor(options: { resolve: Resolver; clock: Clock; ttlMs?: number; decide?: ReachDecider }) {
    this.#resolve = options.resolve;
    this.#clock = options.clock;
    this.#ttlMs = options.ttlMs ?? 60_000;
    this.#decide = options.decide;
  }

  of(registry: string, base: URL): Promise<Reach> {
    const key = `${registry}\n${base.href}`;
    const now = this.#clock.now();
    const cached = this.#entries.get(key);
    if (cached && now < cached.until) return cached.reach;
    const reach = this.#classify(registry, base).then((found) => {
      if (found === undefined) this.#entries.delete(key);
      return found ?? 'public';
    });
    this.#entries.set(key, { reach, until: now + this.#ttlMs });
    return reach;
  }

  async #classify(registry: string, base: URL): Promise<Reach | undefined> {
    if (this.#decide) return this.#decide(registry, base);
    return registryReach(base, this.#resolve);
  }
}
