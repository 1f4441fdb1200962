import { generateKeyPairSync, createHmac, createSign } from 'node:crypto';

/**
 * Seeded generators of hostile input for signaling: requests of every method of
 * `gateway.signaling.v1`, valid and mutated, broken envelopes, binary and oversized frames,
 * forged join tokens and spliced resume tokens, and HTTP requests. The same seed gives the same
 * sequence, so a failure found by a long run is replayed by its seed.
 */

/** mulberry32: small, fast, good enough to explore inputs (not for secrets). */
export class Rng {
  private state: number;

  constructor(readonly seed: number) {
    this.state = seed >>> 0;
  }

  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  int(max: number): number {
    return Math.floor(this.next() * max);
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }

  bytes(n: number): Buffer {
    const out = Buffer.alloc(n);
    for (let i = 0; i < n; i++) out[i] = this.int(256);
    return out;
  }
}

/** Ids a joined client really holds, so mutated requests also reach the code behind the checks. */
export interface KnownIds {
  transportId?: string;
  producerId?: string;
  consumerId?: string;
  messageId?: string;
  actionId?: string;
  artifactId?: string;
  participantId?: string;
}

const rtpParameters = (kind: 'audio' | 'video', ssrc: number) =>
  kind === 'audio'
    ? {
        mid: '0',
        codecs: [{ mimeType: 'audio/opus', payloadType: 111, clockRate: 48000, channels: 2, parameters: { useinbandfec: 1 }, rtcpFeedback: [{ type: 'transport-cc', parameter: '' }] }],
        headerExtensions: [{ uri: 'urn:ietf:params:rtp-hdrext:sdes:mid', id: 4 }],
        encodings: [{ ssrc }],
        rtcp: { cname: 'fuzz', reducedSize: true },
      }
    : {
        mid: '1',
        codecs: [{ mimeType: 'video/VP8', payloadType: 96, clockRate: 90000, rtcpFeedback: [{ type: 'nack' }, { type: 'nack', parameter: 'pli' }] }],
        encodings: [{ ssrc }],
        rtcp: { cname: 'fuzz' },
      };

const rtpCapabilities = {
  codecs: [
    { kind: 'audio', mimeType: 'audio/opus', preferredPayloadType: 100, clockRate: 48000, channels: 2 },
    { kind: 'video', mimeType: 'video/VP8', preferredPayloadType: 101, clockRate: 90000, rtcpFeedback: [{ type: 'nack' }] },
  ],
  headerExtensions: [{ kind: 'video', uri: 'urn:ietf:params:rtp-hdrext:sdes:mid', preferredId: 1 }],
};

const webauthnAssertion = { id: 'AAAA', rawId: 'AAAA', type: 'public-key', response: { clientDataJSON: 'e30', authenticatorData: 'AAAA', signature: 'AAAA' }, clientExtensionResults: {} };
const webauthnAttestation = { id: 'AAAA', rawId: 'AAAA', type: 'public-key', response: { clientDataJSON: 'e30', attestationObject: 'o2Nm' }, clientExtensionResults: {} };

/** Every method of the protocol with well-formed parameters (using real ids where known). */
export function validParams(rng: Rng, method: string, ids: KnownIds, tokens: { join: string; resume: string }): Record<string, unknown> {
  const id = (known: string | undefined) => known ?? `x${rng.int(1e9)}`;
  switch (method) {
    case 'join':
      return { token: tokens.join, protocolVersion: 1 };
    case 'resume':
      return { resumeToken: tokens.resume, protocolVersion: 1 };
    case 'createTransport':
      return { direction: rng.pick(['send', 'recv']) };
    case 'connectTransport':
      return { transportId: id(ids.transportId), dtlsParameters: { role: 'client', fingerprints: [{ algorithm: 'sha-256', value: 'AA:BB:CC' }] } };
    case 'restartIce':
    case 'getStats':
      return { transportId: id(ids.transportId) };
    case 'produce': {
      const kind = rng.pick(['audio', 'video'] as const);
      return {
        transportId: id(ids.transportId),
        kind,
        source: kind === 'audio' ? rng.pick(['microphone', 'screen_audio']) : rng.pick(['camera', 'screen']),
        rtpParameters: rtpParameters(kind, 1 + rng.int(1e9)),
        paused: rng.chance(0.2),
      };
    }
    case 'pauseProducer':
    case 'resumeProducer':
    case 'closeProducer':
      return { producerId: id(ids.producerId) };
    case 'consume':
      return { producerId: id(ids.producerId), rtpCapabilities, ...(rng.chance(0.5) ? { transportId: id(ids.transportId) } : {}) };
    case 'resumeConsumer':
    case 'pauseConsumer':
      return { consumerId: id(ids.consumerId) };
    case 'setPreferredLayers':
      return { consumerId: id(ids.consumerId), spatialLayer: rng.int(3), ...(rng.chance(0.5) ? { temporalLayer: rng.int(3) } : {}) };
    case 'ping':
      return { clientTimeMs: Date.now() };
    case 'sendMessage':
      return { text: rng.pick(['hello', 'my card is 4111 1111 1111 1111', 'two\nlines', 'ünïcødé 😀']), clientMessageId: `c${rng.int(1e9)}` };
    case 'redactMessage':
      return { messageId: id(ids.messageId) };
    case 'requestSmartAction':
      return { kind: rng.pick(['photo', 'screenshot', 'verification']) };
    case 'answerSmartAction':
      return rng.chance(0.5) ? { actionId: id(ids.actionId), decline: true } : { actionId: id(ids.actionId), webauthnResponse: webauthnAssertion };
    case 'registerDeviceKey':
      return { response: webauthnAttestation };
    case 'artifactUrl':
      return { artifactId: id(ids.artifactId) };
    case 'updateParticipant':
      return rng.pick([{ name: 'Ann (Billing)' }, { metadata: '{"queue":"billing"}' }, { name: 'x'.repeat(rng.int(300)), metadata: 'y'.repeat(rng.int(6_000)) }, {}]);
    case 'sendData':
      return {
        topic: rng.pick(['', 'typing', 'app-signal']),
        payload: rng.pick(['{"typing":true}', 'x'.repeat(rng.int(20_000)), 'ünïcødé 😀']),
        ...(rng.chance(0.5) ? { destinationParticipantIds: Array.from({ length: rng.int(4) }, () => id(ids.participantId)) } : {}),
      };
    default:
      // leave, recording controls, deviceKeyOptions
      return {};
  }
}

/** The methods of gateway.signaling.v1 (the schema test checks this list against the server's). */
export const METHODS = [
  'join',
  'resume',
  'createTransport',
  'connectTransport',
  'restartIce',
  'produce',
  'pauseProducer',
  'resumeProducer',
  'closeProducer',
  'consume',
  'resumeConsumer',
  'pauseConsumer',
  'setPreferredLayers',
  'getStats',
  'ping',
  'leave',
  'startRecording',
  'pauseRecording',
  'resumeRecording',
  'stopRecording',
  'sendMessage',
  'redactMessage',
  'requestSmartAction',
  'answerSmartAction',
  'deviceKeyOptions',
  'registerDeviceKey',
  'artifactUrl',
  'sendData',
  'updateParticipant',
] as const;

/**
 * Values JSON can carry that no field should accept, as raw JSON text (some cannot be written by
 * JSON.stringify: an overflowing number, 10,000 levels of nesting).
 */
function hostileJson(rng: Rng): string {
  switch (rng.int(22)) {
    case 0:
      return '"NaN"';
    case 1:
      return '1e400';
    case 2:
      return '-1';
    case 3:
      return String(2 ** 53 + 2);
    case 4:
      return '4294967296';
    case 5:
      return '0.5';
    case 6:
      return JSON.stringify('x'.repeat(rng.pick([65, 300, 5_000, 70_000])));
    case 7:
      return JSON.stringify('\u0000\r\n\u001b[31m\u2028\u202e');
    case 8:
      return '"\\ud800"';
    case 9:
      return JSON.stringify('ünïcødé 😀 中文 \u200f');
    case 10:
      return '{"toString":1,"valueOf":1}';
    case 11:
      return '{"__proto__":{"polluted":true}}';
    case 12:
      return '{"constructor":{"prototype":{"polluted":true}}}';
    case 13:
      return `${'['.repeat(10_000)}${']'.repeat(10_000)}`;
    case 14:
      return `${'{"a":'.repeat(2_000)}1${'}'.repeat(2_000)}`;
    case 15:
      return 'null';
    case 16:
      return 'true';
    case 17:
      return '[]';
    case 18:
      return '{}';
    case 19:
      return JSON.stringify(Array.from({ length: rng.pick([10, 1_000, 6_000]) }, (_, i) => i));
    case 20:
      return JSON.stringify('../../../../etc/passwd');
    default:
      return JSON.stringify(`${'A'.repeat(20)}.${'B'.repeat(20)}.${'C'.repeat(20)}`);
  }
}

const RAW = '\u0000RAW:';

/** Replaces one value somewhere in the tree, removes a key or adds a hostile one. */
function mutateTree(rng: Rng, value: unknown, raws: string[], depth = 0): unknown {
  const raw = () => {
    raws.push(hostileJson(rng));
    return `${RAW}${raws.length - 1}`;
  };
  if (typeof value !== 'object' || value === null) return raw();
  if (Array.isArray(value)) {
    if (value.length === 0 || rng.chance(0.3)) return raw();
    const copy = [...value];
    const i = rng.int(copy.length);
    copy[i] = mutateTree(rng, copy[i], raws, depth + 1);
    return copy;
  }
  const copy: Record<string, unknown> = { ...(value as Record<string, unknown>) };
  const keys = Object.keys(copy);
  const action = rng.int(keys.length === 0 ? 1 : 4);
  if (action === 0) copy[rng.pick(['__proto__', 'constructor', 'extra', 'id', '', '\u0000'])] = raw();
  else if (action === 1) delete copy[rng.pick(keys)];
  else {
    const key = rng.pick(keys);
    copy[key] = depth < 4 && rng.chance(0.6) ? mutateTree(rng, copy[key], raws, depth + 1) : raw();
  }
  return copy;
}

/** JSON text of `value`, with the raw fragments put in place of their markers. */
function render(value: unknown, raws: string[]): string {
  return JSON.stringify(value).replace(/"\\u0000RAW:(\d+)"/g, (_, i: string) => raws[Number(i)]!);
}

export type FrameKind = 'valid' | 'mutated' | 'envelope' | 'binary' | 'oversized';

/** One frame to send: text or binary, and what it is. */
export interface Frame {
  kind: FrameKind;
  data: string | Buffer;
  method?: string;
}

/** A request frame of a random method, valid or mutated, or a broken one. */
export function nextFrame(rng: Rng, id: number, ids: KnownIds, tokens: { join: string; resume: string }, maxFrameBytes: number): Frame {
  const method = rng.pick(METHODS);
  return frameOf(rng, id, method, validParams(rng, method, ids, tokens), maxFrameBytes);
}

/**
 * A frame of a request of `method` whose valid parameters are `valid`, for any protocol of
 * `{id, <method>: {...}}` frames: sent as they are, mutated, in a broken envelope, binary, or
 * oversized.
 */
export function frameOf(rng: Rng, id: number, method: string, valid: unknown, maxFrameBytes: number): Frame {
  const roll = rng.next();
  if (roll < 0.3) return { kind: 'valid', method, data: JSON.stringify({ id, [method]: valid }) };
  if (roll < 0.75) {
    const raws: string[] = [];
    const params = mutateTree(rng, valid, raws);
    return { kind: 'mutated', method, data: render({ id, [method]: params }, raws) };
  }
  if (roll < 0.9) return { kind: 'envelope', data: brokenEnvelope(rng, id, method) };
  if (roll < 0.96) return { kind: 'binary', data: rng.bytes(1 + rng.int(512)) };
  return { kind: 'oversized', data: JSON.stringify({ id, ping: { pad: 'x'.repeat(maxFrameBytes + rng.int(4096)) } }) };
}

function brokenEnvelope(rng: Rng, id: number, method: string): string {
  switch (rng.int(14)) {
    case 0:
      return '';
    case 1:
      return '{';
    case 2:
      return `{"id":${id},"${method}":{}`;
    case 3:
      return `{"id":"${id}","${method}":{}}`;
    case 4:
      return `{"id":-${id},"${method}":{}}`;
    case 5:
      return `{"id":${id}.5,"${method}":{}}`;
    case 6:
      return `{"id":${id},"${method}":{},"ping":{}}`;
    case 7:
      return `{"id":${id}}`;
    case 8:
      return `[{"id":${id},"${method}":{}}]`;
    case 9:
      return rng.pick(['null', '42', '"ping"', 'true']);
    case 10:
      return `{"id":${id},"${method}":${rng.pick(['null', '[]', '"x"', '7'])}}`;
    case 11:
      return `{"id":${id},"${'m'.repeat(rng.int(5_000))}":{}}`;
    case 12:
      return `{"id":${id},"__proto__":{"${method}":{}}}`;
    default:
      return Buffer.from(rng.bytes(64)).toString('latin1');
  }
}

const b64url = (value: string | Buffer) => Buffer.from(value).toString('base64url');

export interface TenantSecret {
  name: string;
  apiKey: string;
  apiSecret: string;
}

/**
 * Join tokens that must be refused: unsigned, other algorithms, tampered claims and signatures,
 * an unknown issuer, another tenant's key, expired, missing claims. `valid` is a real token of
 * `tenant` whose claims the forgeries start from.
 */
export function forgedTokens(rng: Rng, valid: string, tenant: TenantSecret, other: TenantSecret): Array<{ what: string; token: string }> {
  const [headerPart, payloadPart, signature] = valid.split('.') as [string, string, string];
  const claims = JSON.parse(Buffer.from(payloadPart, 'base64url').toString()) as Record<string, any>;
  const now = Math.floor(Date.now() / 1000);
  const hmac = (alg: 'sha256' | 'sha384' | 'sha512', secret: string, header: object, payload: object) => {
    const signingInput = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(payload))}`;
    return `${signingInput}.${createHmac(alg, secret).update(signingInput).digest('base64url')}`;
  };
  const asymmetric = (alg: 'RS256' | 'ES256', payload: object) => {
    const { privateKey } = alg === 'RS256' ? generateKeyPairSync('rsa', { modulusLength: 2048 }) : generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const signingInput = `${b64url(JSON.stringify({ alg, typ: 'JWT' }))}.${b64url(JSON.stringify(payload))}`;
    const signer = createSign('SHA256').update(signingInput);
    return `${signingInput}.${signer.sign(alg === 'ES256' ? { key: privateKey, dsaEncoding: 'ieee-p1363' } : privateKey).toString('base64url')}`;
  };
  const flipped = signature.slice(0, -2) + (signature.endsWith('AA') ? 'BB' : 'AA');
  const elevated = { ...claims, role: 'agent', grants: { ...claims.grants, canRecord: true, canPublish: true }, room: `${claims.room}-other` };
  const forged = [
    { what: 'alg none', token: `${b64url(JSON.stringify({ alg: 'none', typ: 'JWT' }))}.${payloadPart}.` },
    { what: 'alg none with signature', token: `${b64url(JSON.stringify({ alg: 'none' }))}.${payloadPart}.${signature}` },
    { what: 'HS384 with the right secret', token: hmac('sha384', tenant.apiSecret, { alg: 'HS384', typ: 'JWT' }, claims) },
    { what: 'HS512 with the right secret', token: hmac('sha512', tenant.apiSecret, { alg: 'HS512', typ: 'JWT' }, claims) },
    { what: 'RS256 with a key of its own', token: asymmetric('RS256', claims) },
    { what: 'ES256 with a key of its own', token: asymmetric('ES256', claims) },
    { what: 'elevated claims, original signature', token: `${headerPart}.${b64url(JSON.stringify(elevated))}.${signature}` },
    { what: 'tampered signature', token: `${headerPart}.${payloadPart}.${flipped}` },
    { what: 'no signature', token: `${headerPart}.${payloadPart}.` },
    { what: 'unknown issuer', token: hmac('sha256', tenant.apiSecret, { alg: 'HS256' }, { ...claims, iss: `nobody-${rng.int(1e6)}` }) },
    { what: "another tenant's key claiming this tenant", token: hmac('sha256', other.apiSecret, { alg: 'HS256' }, { ...claims, iss: other.apiKey }) },
    { what: "this tenant's key id signed with another's secret", token: hmac('sha256', other.apiSecret, { alg: 'HS256' }, claims) },
    { what: 'expired', token: hmac('sha256', tenant.apiSecret, { alg: 'HS256' }, { ...claims, exp: now - 3_600, jti: `j${rng.int(1e9)}` }) },
    { what: 'not yet valid', token: hmac('sha256', tenant.apiSecret, { alg: 'HS256' }, { ...claims, nbf: now + 3_600, jti: `j${rng.int(1e9)}` }) },
    { what: 'no jti', token: hmac('sha256', tenant.apiSecret, { alg: 'HS256' }, { ...claims, jti: undefined }) },
    { what: 'no exp', token: hmac('sha256', tenant.apiSecret, { alg: 'HS256' }, { ...claims, exp: undefined, jti: `j${rng.int(1e9)}` }) },
    { what: 'a role that does not exist', token: hmac('sha256', tenant.apiSecret, { alg: 'HS256' }, { ...claims, role: 'admin', jti: `j${rng.int(1e9)}` }) },
    { what: 'crit header', token: hmac('sha256', tenant.apiSecret, { alg: 'HS256', crit: ['x'], x: 1 }, { ...claims, jti: `j${rng.int(1e9)}` }) },
  ];
  return forged;
}

/**
 * Resume tokens made of the parts of two real sessions' tokens (tenant.room.participant.secret):
 * none of them is anyone's.
 */
export function splicedResumeTokens(a: string, b: string): string[] {
  const [ta, ra, pa, sa] = a.split('.') as [string, string, string, string];
  const [tb, rb, pb, sb] = b.split('.') as [string, string, string, string];
  return [
    `${ta}.${ra}.${pa}.${sb}`,
    `${ta}.${ra}.${pb}.${sb}`,
    `${ta}.${rb}.${pa}.${sa}`,
    `${tb}.${ra}.${pa}.${sa}`,
    `${ta}.${ra}.${pb}.${sa}`,
    `${ta}.${ra}.${pa}.${sa.slice(0, -1)}${sa.endsWith('A') ? 'B' : 'A'}`,
    `${ta}.${ra}.${pa}`,
    `${ta}.${ra}.${pa}.${sa}.${sb}`,
  ].filter((t) => t !== a && t !== b);
}
