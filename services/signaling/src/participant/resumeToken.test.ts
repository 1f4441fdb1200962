import { describe, expect, it } from 'vitest';
import { hashResumeSecret, mintResumeToken, parseResumeToken, resumeSecretMatches } from './resumeToken.js';

describe('resume tokens', () => {
  it('parse back into what they were minted for, and verify against the stored hash', () => {
    const { token, hash } = mintResumeToken('demo', 'room-1', 'PA_abc');
    const parsed = parseResumeToken(token);
    expect(parsed).toMatchObject({ tenant: 'demo', room: 'room-1', participantId: 'PA_abc' });
    expect(resumeSecretMatches(hash, parsed!.secret)).toBe(true);
  });

  it('never verify another secret, a truncated hash or an empty one', () => {
    const { token, hash } = mintResumeToken('demo', 'room-1', 'PA_abc');
    const { secret } = parseResumeToken(token)!;
    expect(resumeSecretMatches(hash, `${secret}x`)).toBe(false);
    expect(resumeSecretMatches(hash.subarray(0, 16), secret)).toBe(false);
    expect(resumeSecretMatches(new Uint8Array(), secret)).toBe(false);
    expect(resumeSecretMatches(hashResumeSecret('other'), secret)).toBe(false);
  });

  it('mint a new secret each time', () => {
    const a = parseResumeToken(mintResumeToken('demo', 'r', 'PA_1').token)!;
    const b = parseResumeToken(mintResumeToken('demo', 'r', 'PA_1').token)!;
    expect(a.secret).not.toBe(b.secret);
  });

  it('refuse anything but four ids joined by dots', () => {
    for (const token of ['', 'a.b.c', 'a.b.c.d.e', 'a..c.d', 'a.b.c.d e', 'a/b.c.d.e', `a.b.c.${'x'.repeat(600)}`, 42 as unknown as string]) {
      expect(parseResumeToken(token)).toBeUndefined();
    }
  });
});
