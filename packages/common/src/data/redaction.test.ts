import { describe, expect, it } from 'vitest';
import { luhnValid, redact } from './redaction.js';

describe('redaction of chat text', () => {
  it('redacts card numbers that pass Luhn, however they are grouped', () => {
    for (const card of ['4111111111111111', '4111 1111 1111 1111', '4111-1111-1111-1111', '378282246310005', '5555 5555 5555 4444']) {
      expect(redact(`my card is ${card}, thanks`)).toEqual({ text: 'my card is [CARD], thanks', counts: { card: 1 } });
    }
  });

  it('leaves digit runs that are not card numbers', () => {
    expect(luhnValid('4111111111111112')).toBe(false);
    expect(redact('order 4111111111111112 shipped').text).toBe('order 4111111111111112 shipped');
    expect(redact('tracking 12345678').text).toBe('tracking 12345678');
  });

  it('redacts US social security numbers, not impossible ones', () => {
    expect(redact('SSN 123-45-6789 ok').text).toBe('SSN [SSN] ok');
    expect(redact('SSN 000-12-3456').text).toBe('SSN 000-12-3456');
  });

  it('redacts phone numbers with libphonenumber, national and international', () => {
    expect(redact('call (415) 555-2671 or +44 20 7946 0958')).toEqual({ text: 'call [PHONE] or [PHONE]', counts: { phone: 2 } });
    // Read in the tenant's country: a French number written nationally.
    expect(redact('appelez le 01 42 68 53 00', { kinds: ['phone'], defaultCountry: 'FR' }).text).toBe('appelez le [PHONE]');
  });

  it('redacts email addresses', () => {
    expect(redact('write to jane.doe+support@example.co.uk please').text).toBe('write to [EMAIL] please');
  });

  it('redacts only the kinds the tenant policy names', () => {
    const text = 'card 4111111111111111, mail a@b.io, phone +1 415 555 2671';
    expect(redact(text, { kinds: ['email'] }).text).toBe('card 4111111111111111, mail [EMAIL], phone +1 415 555 2671');
    expect(redact(text).text).toBe('card [CARD], mail [EMAIL], phone [PHONE]');
  });
});
