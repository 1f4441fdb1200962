import { createHash, createHmac, randomBytes } from 'node:crypto';
import dgram from 'node:dgram';

/**
 * Just enough of a TURN client (RFC 5766 over STUN, RFC 5389) to ask a server for an allocation
 * over UDP with a long-term credential: an Allocate without credentials, which the server answers
 * 401 with its realm and nonce, then the same with USERNAME, REALM, NONCE and MESSAGE-INTEGRITY.
 * Written here rather than taken from a package: only the Allocate exchange is needed, and it is
 * a few dozen lines of the RFCs.
 */

const MAGIC_COOKIE = 0x2112a442;
const ALLOCATE_REQUEST = 0x0003;
const ALLOCATE_SUCCESS = 0x0103;
const ALLOCATE_ERROR = 0x0113;
const REFRESH_REQUEST = 0x0004;
const REFRESH_SUCCESS = 0x0104;
const ATTR = { LIFETIME: 0x000d, USERNAME: 0x0006, MESSAGE_INTEGRITY: 0x0008, ERROR_CODE: 0x0009, REALM: 0x0014, NONCE: 0x0015, REQUESTED_TRANSPORT: 0x0019, XOR_RELAYED_ADDRESS: 0x0016 } as const;

type Attribute = { type: number; value: Buffer };

function attribute(type: number, value: Buffer): Buffer {
  const padded = Buffer.alloc(4 + Math.ceil(value.length / 4) * 4);
  padded.writeUInt16BE(type, 0);
  padded.writeUInt16BE(value.length, 2);
  value.copy(padded, 4);
  return padded;
}

/** A request; with `key`, MESSAGE-INTEGRITY last: HMAC-SHA1 over the message with its length already counting the integrity. */
function encode(type: number, transactionId: Buffer, attributes: Attribute[], key?: Buffer): Buffer {
  const body = Buffer.concat(attributes.map((a) => attribute(a.type, a.value)));
  const header = Buffer.alloc(20);
  header.writeUInt16BE(type, 0);
  header.writeUInt16BE(body.length + (key ? 24 : 0), 2);
  header.writeUInt32BE(MAGIC_COOKIE, 4);
  transactionId.copy(header, 8);
  if (!key) return Buffer.concat([header, body]);
  const integrity = createHmac('sha1', key)
    .update(Buffer.concat([header, body]))
    .digest();
  return Buffer.concat([header, body, attribute(ATTR.MESSAGE_INTEGRITY, integrity)]);
}

function decode(message: Buffer): { type: number; transactionId: Buffer; attributes: Map<number, Buffer> } {
  const type = message.readUInt16BE(0);
  const length = message.readUInt16BE(2);
  const attributes = new Map<number, Buffer>();
  for (let at = 20; at + 4 <= 20 + length; ) {
    const attrType = message.readUInt16BE(at);
    const attrLength = message.readUInt16BE(at + 2);
    attributes.set(attrType, message.subarray(at + 4, at + 4 + attrLength));
    at += 4 + Math.ceil(attrLength / 4) * 4;
  }
  return { type, transactionId: message.subarray(8, 20), attributes };
}

/** What the server answered the authenticated Allocate: `allocated`, or the error code (401: the credential was refused). */
export type AllocateOutcome = { allocated: true; relayedPort: number } | { allocated: false; errorCode: number; reason: string };

/** An allocation kept open on its socket (the same 5-tuple), to be refreshed as a client under way refreshes it. */
export interface TurnAllocation {
  outcome: AllocateOutcome;
  /** A Refresh with the allocation's credential: 'ok', or the error code the server answered (438, a stale nonce, is retried once). */
  refresh(): Promise<'ok' | number>;
  /**
   * Releases the allocation (a Refresh with a lifetime of 0, as a client hanging up does) and
   * closes the socket. Left alive, the allocation would hold its 5-tuple for its lifetime: a later
   * socket the kernel gives the same port would be answered 437 (Allocation Mismatch); released,
   * coturn lets go of the 5-tuple within about a second.
   */
  close(): Promise<void>;
}

const errorCodeOf = (answer: ReturnType<typeof decode>) => {
  const error = answer.attributes.get(ATTR.ERROR_CODE);
  return error ? (error[2]! & 0x7) * 100 + error[3]! : 0;
};

/** An unexpected answer as a failure names it: its message type, and its error code and reason when it has them. */
const describeAnswer = (answer: ReturnType<typeof decode>) => {
  const error = answer.attributes.get(ATTR.ERROR_CODE);
  const attributes = [...answer.attributes.keys()].map((type) => `0x${type.toString(16)}`).join(', ');
  return `message type 0x${answer.type.toString(16)}${error ? `, error ${errorCodeOf(answer)} "${error.subarray(4).toString()}"` : ''}, attributes [${attributes}]`;
};

/**
 * Asks the TURN server at 127.0.0.1:`port` (UDP) for a relay with `username` and `credential`, and
 * keeps it; from `localPort` when given (the same 5-tuple again), else from a port the kernel picks.
 */
export async function openTurnAllocation(port: number, username: string, credential: string, timeoutMs = 5_000, localPort?: number): Promise<TurnAllocation> {
  const socket = dgram.createSocket('udp4');
  // Sends wait for the bind.
  if (localPort !== undefined) socket.bind(localPort, '127.0.0.1');
  const exchange = (request: Buffer) =>
    new Promise<ReturnType<typeof decode>>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no answer from the TURN server within ${timeoutMs} ms`)), timeoutMs);
      socket.once('message', (message) => {
        clearTimeout(timer);
        resolve(decode(message));
      });
      socket.send(request, port, '127.0.0.1');
    });
  let allocated = false;
  const close = async () => {
    if (allocated) {
      allocated = false;
      // Best effort: the server may be gone already.
      await refreshFor(0).catch(() => undefined);
    }
    socket.close();
  };
  // Set once the challenge is answered: a Refresh for `seconds` with the allocation's credential.
  let refreshFor: (seconds: number, retry?: boolean) => Promise<'ok' | number> = async () => 'ok';
  try {
    const udp = { type: ATTR.REQUESTED_TRANSPORT, value: Buffer.from([17, 0, 0, 0]) };
    const challenge = await exchange(encode(ALLOCATE_REQUEST, randomBytes(12), [udp]));
    const realm = challenge.attributes.get(ATTR.REALM);
    let nonce = challenge.attributes.get(ATTR.NONCE);
    if (challenge.type !== ALLOCATE_ERROR || !realm || !nonce) throw new Error(`expected a 401 challenge with realm and nonce, got ${describeAnswer(challenge)}`);
    const key = createHash('md5').update(`${username}:${realm.toString()}:${credential}`).digest();
    const signed = (type: number, extra: Attribute[]) =>
      encode(type, randomBytes(12), [{ type: ATTR.USERNAME, value: Buffer.from(username) }, { type: ATTR.REALM, value: realm }, { type: ATTR.NONCE, value: nonce! }, ...extra], key);
    refreshFor = async (seconds: number, retry = true): Promise<'ok' | number> => {
      const lifetime = Buffer.alloc(4);
      lifetime.writeUInt32BE(seconds, 0);
      const answer = await exchange(signed(REFRESH_REQUEST, [{ type: ATTR.LIFETIME, value: lifetime }]));
      if (answer.type === REFRESH_SUCCESS) return 'ok';
      const code = errorCodeOf(answer);
      if (code === 438 && retry && answer.attributes.get(ATTR.NONCE)) {
        nonce = answer.attributes.get(ATTR.NONCE);
        return refreshFor(seconds, false);
      }
      return code;
    };
    const refresh = () => refreshFor(600);
    const answer = await exchange(signed(ALLOCATE_REQUEST, [udp]));
    if (answer.type === ALLOCATE_SUCCESS) {
      allocated = true;
      const relayed = answer.attributes.get(ATTR.XOR_RELAYED_ADDRESS);
      return { outcome: { allocated: true, relayedPort: relayed ? relayed.readUInt16BE(2) ^ (MAGIC_COOKIE >>> 16) : 0 }, refresh: () => refresh(), close };
    }
    const error = answer.attributes.get(ATTR.ERROR_CODE);
    if (answer.type !== ALLOCATE_ERROR || !error) throw new Error(`unexpected answer to Allocate: ${describeAnswer(answer)}`);
    return { outcome: { allocated: false, errorCode: errorCodeOf(answer), reason: error.subarray(4).toString() }, refresh: () => refresh(), close };
  } catch (error) {
    await close();
    throw error;
  }
}

/** Asks the TURN server at 127.0.0.1:`port` (UDP) for a relay with `username` and `credential`. */
export async function turnAllocate(port: number, username: string, credential: string, timeoutMs = 5_000): Promise<AllocateOutcome> {
  const allocation = await openTurnAllocation(port, username, credential, timeoutMs);
  await allocation.close();
  return allocation.outcome;
}
