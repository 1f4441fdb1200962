import { describe, expect, it } from 'vitest';
import { ErrorCode } from '@gateway/common';
import { parseFrame } from './frames.js';
import { RateLimiter } from './RateLimiter.js';

describe('parseFrame', () => {
  it('decodes a request', () => {
    expect(parseFrame('{"id":7,"createTransport":{"direction":"send"}}', 1024)).toEqual({
      id: 7,
      request: { $case: 'createTransport', value: { direction: 'send' } },
    });
  });

  it.each([
    ['{oops', 0, ErrorCode.MALFORMED_MESSAGE],
    ['[1,2]', 0, ErrorCode.MALFORMED_MESSAGE],
    ['{"id":-1,"ping":{}}', 0, ErrorCode.MALFORMED_MESSAGE],
    ['{"id":"3","ping":{}}', 0, ErrorCode.MALFORMED_MESSAGE],
    ['{"id":3,"fly":{}}', 3, ErrorCode.UNKNOWN_METHOD],
    ['{"id":3}', 3, ErrorCode.UNKNOWN_METHOD],
    ['{"id":3,"ping":{},"leave":{}}', 3, ErrorCode.UNKNOWN_METHOD],
    ['{"id":3,"ping":"now"}', 3, ErrorCode.MALFORMED_MESSAGE],
  ])('answers %s with %s', (text, id, code) => {
    const parsed = parseFrame(text, 1024);
    expect(parsed.id).toBe(id);
    expect(parsed.error?.code).toBe(code);
    expect(parsed.request).toBeUndefined();
  });

  it('refuses frames over the limit', () => {
    expect(parseFrame(`{"id":1,"ping":{"x":"${'a'.repeat(2000)}"}}`, 1024).error?.code).toBe(ErrorCode.FRAME_TOO_LARGE);
  });
});

describe('RateLimiter', () => {
  it('allows the burst, then refuses until tokens refill', () => {
    const limiter = new RateLimiter(10, 5);
    const t0 = Date.now() + 1_000;
    for (let i = 0; i < 5; i++) expect(limiter.take(t0)).toBe(0);
    const wait = limiter.take(t0);
    expect(wait).toBeGreaterThan(0);
    expect(wait).toBeLessThanOrEqual(100);
    expect(limiter.take(t0 + 100)).toBe(0);
  });

  it('calls a client abusive after five bursts of refusals within 10 s', () => {
    const limiter = new RateLimiter(1, 2);
    const t0 = Date.now() + 1_000;
    limiter.take(t0);
    limiter.take(t0);
    for (let i = 0; i < 10; i++) limiter.take(t0);
    expect(limiter.abusive(t0)).toBe(false);
    for (let i = 0; i < 1; i++) limiter.take(t0);
    expect(limiter.abusive(t0)).toBe(true);
    expect(limiter.abusive(t0 + 11_000)).toBe(false);
  });
});
