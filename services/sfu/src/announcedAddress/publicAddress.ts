import ipaddr from 'ipaddr.js';
import { z } from 'zod';

/**
 * Ranges a test or a private network may announce when SFU_ANNOUNCED_ADDRESS_ALLOW_PRIVATE is
 * set. Never unspecified, broadcast, multicast or reserved ranges: no client reaches those.
 */
const PRIVATE_RANGES = new Set(['private', 'loopback', 'linkLocal', 'uniqueLocal', 'carrierGradeNat']);

/**
 * An address a metadata service or a STUN server answered, as clients would be told it: one IPv4
 * or IPv6 address in its canonical form (IPv4 written as IPv6 is the IPv4 address it is), public
 * unicast unless `allowPrivate`. Anything else (a name, a list, a range, a private address a
 * misconfigured or hostile answer gives) is refused with a message that does not quote it.
 */
export function announcedAddressSchema(allowPrivate: boolean) {
  return z
    .string()
    .max(64, 'is not an address')
    .pipe(z.union([z.ipv4(), z.ipv6()], { error: 'is not one IPv4 or IPv6 address' }))
    .transform((text) => ipaddr.process(text))
    .refine((address) => address.range() === 'unicast' || (allowPrivate && PRIVATE_RANGES.has(address.range())), { error: 'is not a public unicast address' })
    .transform((address) => address.toString());
}

/** The address in canonical form, or the reason it cannot be announced (without the address). */
export function checkAnnouncedAddress(text: string, allowPrivate: boolean): { address: string } | { problem: string } {
  const parsed = announcedAddressSchema(allowPrivate).safeParse(text);
  return parsed.success ? { address: parsed.data } : { problem: parsed.error.issues[0]?.message ?? 'is not an address' };
}
