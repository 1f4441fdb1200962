import { findPhoneNumbersInText, type CountryCode } from 'libphonenumber-js';

/**
 * Redaction of personal data in chat text before it is stored or shown: payment card numbers
 * (checked with Luhn, written with spaces or dashes or not), US social security numbers, phone
 * numbers (libphonenumber, in the tenant's default country and in international form) and email
 * addresses become typed placeholders such as `[CARD]`.
 */
export const redactionKinds = ['card', 'ssn', 'phone', 'email'] as const;
export type RedactionKind = (typeof redactionKinds)[number];

export interface RedactionPolicy {
  /** What is redacted; the tenant's choice. */
  kinds: readonly RedactionKind[];
  /** Country phone numbers without a +prefix are read in (ISO 3166 alpha-2). */
  defaultCountry?: string;
}

export const defaultRedactionPolicy: RedactionPolicy = { kinds: redactionKinds, defaultCountry: 'US' };

export interface Redacted {
  text: string;
  /** What was replaced, by kind (never the values). */
  counts: Partial<Record<RedactionKind, number>>;
}

const placeholders: Record<RedactionKind, string> = { card: '[CARD]', ssn: '[SSN]', phone: '[PHONE]', email: '[EMAIL]' };

/** 13 to 19 digits, optionally grouped by single spaces or dashes. */
const CARD_CANDIDATE = /(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])/g;
const SSN = /(?<![\d-])(?!000|666|9\d\d)\d{3}([- ]?)(?!00)\d{2}\1(?!0000)\d{4}(?![\d-])/g;
const EMAIL = /[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}/g;

export function luhnValid(digits: string): boolean {
  let sum = 0;
  for (let i = 0; i < digits.length; i++) {
    let d = Number(digits[digits.length - 1 - i]);
    if (i % 2 === 1) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
  }
  return sum % 10 === 0;
}

export function redact(text: string, policy: RedactionPolicy = defaultRedactionPolicy): Redacted {
  const counts: Redacted['counts'] = {};
  const enabled = new Set(policy.kinds);
  const count = (kind: RedactionKind) => (counts[kind] = (counts[kind] ?? 0) + 1);
  let out = text;
  // Cards first: their digit runs would otherwise be read as phone numbers.
  if (enabled.has('card')) {
    out = out.replace(CARD_CANDIDATE, (match) => {
      const digits = match.replace(/[ -]/g, '');
      if (!luhnValid(digits)) return match;
      count('card');
      return placeholders.card;
    });
  }
  if (enabled.has('ssn')) {
    out = out.replace(SSN, () => {
      count('ssn');
      return placeholders.ssn;
    });
  }
  if (enabled.has('email')) {
    out = out.replace(EMAIL, () => {
      count('email');
      return placeholders.email;
    });
  }
  if (enabled.has('phone')) {
    const found = findPhoneNumbersInText(out, policy.defaultCountry as CountryCode | undefined);
    // Replace from the end so earlier offsets stay valid.
    for (const match of [...found].reverse()) {
      out = out.slice(0, match.startsAt) + placeholders.phone + out.slice(match.endsAt);
      count('phone');
    }
  }
  return { text: out, counts };
}
