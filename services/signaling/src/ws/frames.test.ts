import { describe, expect, it } from 'vitest';
import { ErrorCode } from '@gateway/common';
import { parseFrame } from './frames.js';
import { RateLimiter } from '../limits/RateLimiter.js';

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

  it('refuses a 10,000-deep token without throwing (it used to overflow the stack)', () => {
    const deep = `${'['.repeat(10_000)}${']'.repeat(10_000)}`;
    const parsed = parseFrame(`{"id":1,"join":{"token":${deep}}}`, 64 * 1024);
    expect(parsed.error?.code).toBe(ErrorCode.MALFORMED_MESSAGE);
    expect(parsed.id).toBe(1);
  });

  it.each([
    ['an object whose toString is not a function', '{"id":2,"join":{"token":{"toString":1}}}'],
    ['an array for a string', '{"id":2,"resume":{"resumeToken":["a"]}}'],
    ['a number for a string', '{"id":2,"createTransport":{"direction":1}}'],
    ['a string for a uint32', '{"id":2,"setPreferredLayers":{"consumerId":"c1","spatialLayer":"NaN"}}'],
    ['an overflowing number (Infinity)', '{"id":2,"setPreferredLayers":{"consumerId":"c1","spatialLayer":1e400}}'],
    ['a negative layer', '{"id":2,"setPreferredLayers":{"consumerId":"c1","spatialLayer":-1}}'],
    ['a fraction for an integer', '{"id":2,"ping":{"clientTimeMs":1.5}}'],
    ['control characters in an id', '{"id":2,"closeProducer":{"producerId":"a\\r\\nb"}}'],
    ['a lone surrogate', '{"id":2,"sendMessage":{"text":"\\ud800 hi"}}'],
    ['a NUL in chat text', '{"id":2,"sendMessage":{"text":"a\\u0000b"}}'],
    ['a __proto__ key', '{"id":2,"consume":{"producerId":"p","rtpCapabilities":{"__proto__":{"admin":true}}}}'],
    ['an unknown source', '{"id":2,"produce":{"transportId":"t","kind":"video","source":"desktop","rtpParameters":{"codecs":[{"mimeType":"video/VP8","payloadType":96,"clockRate":90000}]}}}'],
    [
      'a payload type out of range',
      '{"id":2,"produce":{"transportId":"t","kind":"video","source":"camera","rtpParameters":{"codecs":[{"mimeType":"video/VP8","payloadType":300,"clockRate":90000}]}}}',
    ],
    ['a huge id', `{"id":2,"closeProducer":{"producerId":"${'a'.repeat(65)}"}}`],
    ['a join token with a line break', '{"id":2,"join":{"token":"a.b\\n.c"}}'],
    ['a resume token of 10,000 characters', `{"id":2,"resume":{"resumeToken":"${'a'.repeat(10_000)}"}}`],
  ])('refuses %s with MALFORMED_MESSAGE', (_what, text) => {
    const parsed = parseFrame(text, 64 * 1024);
    expect(parsed.error?.code).toBe(ErrorCode.MALFORMED_MESSAGE);
    expect(parsed.request).toBeUndefined();
    expect(parsed.id).toBe(2);
  });

  it('never echoes what it refuses', () => {
    const parsed = parseFrame('{"id":2,"sendMessage":{"text":"my card 4111 1111 1111 1111","clientMessageId":"x y"}}', 1024);
    expect(parsed.error?.message).not.toContain('4111');
    expect(parsed.error?.message).toContain('clientMessageId');
  });

  it('decodes a valid request of every method', () => {
    const jwt = 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln';
    const rtpParameters = {
      mid: '0',
      codecs: [
        { mimeType: 'audio/opus', payloadType: 111, clockRate: 48000, channels: 2, parameters: { useinbandfec: 1, 'sprop-stereo': 0 }, rtcpFeedback: [{ type: 'transport-cc', parameter: '' }] },
      ],
      headerExtensions: [{ uri: 'urn:ietf:params:rtp-hdrext:sdes:mid', id: 4, encrypt: false, parameters: {} }],
      encodings: [{ ssrc: 1234, dtx: false }],
      rtcp: { cname: 'x/Y+z', reducedSize: true },
    };
    const rtpCapabilities = {
      codecs: [{ kind: 'video', mimeType: 'video/VP8', preferredPayloadType: 96, clockRate: 90000, rtcpFeedback: [{ type: 'nack' }, { type: 'nack', parameter: 'pli' }] }],
      headerExtensions: [{ kind: 'video', uri: 'urn:3gpp:video-orientation', preferredId: 11, direction: 'sendrecv' }],
    };
    const webauthn = { id: 'abc', rawId: 'abc', type: 'public-key', response: { clientDataJSON: 'eyJ9', authenticatorData: 'AAAA', signature: 'MEUC' }, clientExtensionResults: {} };
    const registration = {
      id: 'abc',
      rawId: 'abc',
      type: 'public-key',
      response: { clientDataJSON: 'eyJ9', attestationObject: 'o2Nm', transports: ['internal'] },
      clientExtensionResults: { credProps: { rk: true } },
    };
    const samples: Record<string, unknown> = {
      join: { token: jwt, protocolVersion: 1 },
      resume: { resumeToken: 'demo.room-1.PA_x.secret_-x' },
      createTransport: { direction: 'recv' },
      connectTransport: { transportId: 'T1', dtlsParameters: { role: 'client', fingerprints: [{ algorithm: 'sha-256', value: 'AB:CD:EF' }] } },
      restartIce: { transportId: 'T1' },
      produce: { transportId: 'T1', kind: 'audio', source: 'microphone', rtpParameters },
      pauseProducer: { producerId: 'P1' },
      resumeProducer: { producerId: 'P1' },
      closeProducer: { producerId: 'P1' },
      consume: { producerId: 'P1', rtpCapabilities },
      resumeConsumer: { consumerId: 'C1' },
      pauseConsumer: { consumerId: 'C1' },
      setPreferredLayers: { consumerId: 'C1', spatialLayer: 2, temporalLayer: 1 },
      getStats: { transportId: 'T1' },
      ping: { clientTimeMs: '1733440000000' },
      leave: {},
      startRecording: {},
      pauseRecording: {},
      resumeRecording: {},
      stopRecording: {},
      sendMessage: { text: 'two\nlines\tand an emoji 😀', clientMessageId: '0c0a3f1e-5b7f-4c1d-9a4e-2f6d8b1c3e5a' },
      redactMessage: { messageId: 'MS_1' },
      requestSmartAction: { kind: 'photo' },
      answerSmartAction: { actionId: 'SA_1', webauthnResponse: webauthn },
      deviceKeyOptions: {},
      registerDeviceKey: { response: registration },
      artifactUrl: { artifactId: 'AT_1' },
    };
    for (const [method, params] of Object.entries(samples)) {
      const parsed = parseFrame(JSON.stringify({ id: 9, [method]: params }), 64 * 1024);
      expect(parsed.error, method).toBeUndefined();
      expect(parsed.request?.$case).toBe(method);
    }
    expect(parseFrame(JSON.stringify({ id: 1, ping: { clientTimeMs: '1733440000000' } }), 1024).request).toEqual({ $case: 'ping', value: { clientTimeMs: 1733440000000 } });
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
