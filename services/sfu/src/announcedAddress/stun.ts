import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { lookup } from 'node:dns/promises';
import net from 'node:net';
import { crc32 } from 'node:zlib';

/**
 * A STUN client of one purpose (RFC 5389): a Binding request over UDP, and the XOR-MAPPED-ADDRESS
 * of its success response, which is where the request came from as the server saw it. Sent from
 * the address and port the media use, the answer is the address clients reach those ports at,
 * through whatever 1:1 NAT the cloud puts in front of the node. Every datagram is parsed
 * strictly: its size, header, cookie and transaction id, each attribute within bounds, the
 * FINGERPRINT when present; anything else is dropped as if it had not arrived.
 */

export interface StunServer {
  /** A name or an IP address (IPv6 without brackets). */
  host: string;
  port: number;
}

export type StunAnswer = { kind: 'mapped'; address: string; port: number } | { kind: 'error'; code: number };

/** What one server gave: its mapped address, or why there is none. */
export type StunOutcome = { server: StunServer; address: string; port: number } | { server: StunServer; problem: string };

const MAGIC_COOKIE = 0x2112a442;
const HEADER_BYTES = 20;
const BINDING_REQUEST = 0x0001;
const BINDING_SUCCESS = 0x0101;
const BINDING_ERROR = 0x0111;
const ATTRIBUTE = { MAPPED_ADDRESS: 0x0001, ERROR_CODE: 0x0009, XOR_MAPPED_ADDRESS: 0x0020, FINGERPRINT: 0x8028 } as const;
/** Comprehension-required attributes (below 0x8000) a Binding response may carry; any other makes it unusable (RFC 5389, 7.3.3). */
const KNOWN_REQUIRED = new Set([0x0001, 0x0006, 0x0008, 0x0009, 0x000a, 0x0014, 0x0015, 0x0020]);
const FINGERPRINT_XOR = 0x5354554e;
/** A Binding response is about a hundred bytes; more than the smallest IPv6 MTU is not one. */
export const MAX_STUN_MESSAGE_BYTES = 1280;

/** Four transmissions of a request: at 0, then after `initialRtoMs`, doubling; given up at `giveUpMs`. */
export interface StunTimings {
  initialRtoMs: number;
  giveUpMs: number;
}

const TRANSMISSIONS = 4;
/**
 * Retransmissions as RFC 5389 (7.2.1) describes them, shortened for a start-up that must not
 * hang: sent at 0, 250, 750 and 1,750 ms, given up at 3,500 ms.
 */
export const STUN_TIMINGS: StunTimings = { initialRtoMs: 250, giveUpMs: 3_500 };

export function bindingRequest(transactionId: Buffer): Buffer {
  const message = Buffer.alloc(HEADER_BYTES);
  message.writeUInt16BE(BINDING_REQUEST, 0);
  message.writeUInt16BE(0, 2);
  message.writeUInt32BE(MAGIC_COOKIE, 4);
  transactionId.copy(message, 8);
  return message;
}

/** The answer a datagram carries to the request of `transactionId`, or a reason to drop it. */
export function parseBindingResponse(datagram: Buffer, transactionId: Buffer): StunAnswer | { problem: string } {
  if (datagram.length < HEADER_BYTES) return { problem: 'shorter than a STUN header' };
  if (datagram.length > MAX_STUN_MESSAGE_BYTES) return { problem: 'larger than a Binding response' };
  const type = datagram.readUInt16BE(0);
  const length = datagram.readUInt16BE(2);
  if ((type & 0xc000) !== 0) return { problem: 'not a STUN message' };
  if (datagram.readUInt32BE(4) !== MAGIC_COOKIE) return { problem: 'no magic cookie' };
  if (length !== datagram.length - HEADER_BYTES || length % 4 !== 0) return { problem: 'its length does not match the datagram' };
  if (!datagram.subarray(8, HEADER_BYTES).equals(transactionId)) return { problem: 'another transaction' };
  if (type !== BINDING_SUCCESS && type !== BINDING_ERROR) return { problem: 'not a Binding response' };
  let mapped: { address: string; port: number } | undefined;
  let errorCode: number | undefined;
  for (let offset = HEADER_BYTES; offset < datagram.length; ) {
    if (offset + 4 > datagram.length) return { problem: 'an attribute header runs past the message' };
    const attribute = datagram.readUInt16BE(offset);
    const valueLength = datagram.readUInt16BE(offset + 2);
    const valueStart = offset + 4;
    const next = valueStart + Math.ceil(valueLength / 4) * 4;
    if (next > datagram.length) return { problem: 'an attribute runs past the message' };
    const value = datagram.subarray(valueStart, valueStart + valueLength);
    if (attribute === ATTRIBUTE.FINGERPRINT) {
      if (valueLength !== 4 || next !== datagram.length) return { problem: 'a FINGERPRINT that is not the last 4 bytes' };
      if (value.readUInt32BE(0) !== (crc32(datagram.subarray(0, offset)) ^ FINGERPRINT_XOR) >>> 0) return { problem: 'a wrong FINGERPRINT' };
    } else if (attribute === ATTRIBUTE.XOR_MAPPED_ADDRESS) {
      // Only the first counts (RFC 5389, 15).
      if (!mapped) {
        const read = xorMappedAddress(value, transactionId);
        if ('problem' in read) return read;
        mapped = read;
      }
    } else if (attribute === ATTRIBUTE.ERROR_CODE) {
      if (valueLength < 4) return { problem: 'a short ERROR-CODE' };
      errorCode = (value[2]! & 0x07) * 100 + value[3]!;
    } else if (attribute < 0x8000 && !KNOWN_REQUIRED.has(attribute)) {
      return { problem: `an unknown comprehension-required attribute 0x${attribute.toString(16).padStart(4, '0')}` };
    }
    offset = next;
  }
  if (type === BINDING_ERROR) return { kind: 'error', code: errorCode ?? 0 };
  if (!mapped) return { problem: 'a success without XOR-MAPPED-ADDRESS' };
  return { kind: 'mapped', ...mapped };
}

function xorMappedAddress(value: Buffer, transactionId: Buffer): { address: string; port: number } | { problem: string } {
  if (value.length < 4) return { problem: 'a short XOR-MAPPED-ADDRESS' };
  const family = value[1];
  const port = value.readUInt16BE(2) ^ (MAGIC_COOKIE >>> 16);
  if (family === 0x01) {
    if (value.length !== 8) return { problem: 'an IPv4 XOR-MAPPED-ADDRESS of the wrong length' };
    const ip = (value.readUInt32BE(4) ^ MAGIC_COOKIE) >>> 0;
    return { address: [ip >>> 24, (ip >>> 16) & 0xff, (ip >>> 8) & 0xff, ip & 0xff].join('.'), port };
  }
  if (family === 0x02) {
    if (value.length !== 20) return { problem: 'an IPv6 XOR-MAPPED-ADDRESS of the wrong length' };
    const key = Buffer.alloc(16);
    key.writeUInt32BE(MAGIC_COOKIE, 0);
    transactionId.copy(key, 4);
    const bytes = Buffer.alloc(16);
    for (let i = 0; i < 16; i++) bytes[i] = value[4 + i]! ^ key[i]!;
    const groups = Array.from({ length: 8 }, (_, i) => bytes.readUInt16BE(i * 2).toString(16));
    return { address: groups.join(':'), port };
  }
  return { problem: 'an XOR-MAPPED-ADDRESS of no known family' };
}

interface Transaction {
  server: StunServer;
  /** Where the server was resolved to: only datagrams from there are read as its answer. */
  address: string;
  id: Buffer;
  outcome?: StunOutcome;
  /** The last datagram from the server that was dropped, and why: the problem reported if nothing better arrives. */
  dropped?: string;
}

/**
 * Sends a Binding request to every server at once from `local` (the media's listen address and
 * first media port), retransmitting to those that have not answered, and returns what each gave.
 * The socket is closed before returning, so the media can bind the port.
 */
export async function queryStunServers(servers: readonly StunServer[], local: { address: string; port: number }, timings: StunTimings): Promise<StunOutcome[]> {
  const family = net.isIPv6(local.address) ? 6 : 4;
  const transactions: Transaction[] = [];
  const outcomes: StunOutcome[] = [];
  for (const server of servers) {
    let address: string;
    try {
      address = net.isIP(server.host) ? server.host : (await lookup(server.host, { family })).address;
    } catch {
      outcomes.push({ server, problem: 'its name does not resolve' });
      continue;
    }
    if (net.isIP(address) !== family) {
      outcomes.push({ server, problem: `not an IPv${family} server, as the media address is` });
      continue;
    }
    transactions.push({ server, address, id: randomBytes(12) });
  }
  if (transactions.length === 0) return outcomes;

  const socket = dgram.createSocket({ type: family === 6 ? 'udp6' : 'udp4' });
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind({ address: local.address, port: local.port, exclusive: true }, () => {
        socket.off('error', reject);
        resolve();
      });
    });
    await new Promise<void>((resolve) => {
      const pending = () => transactions.filter((t) => !t.outcome);
      const finishIfDone = () => {
        if (pending().length === 0) done();
      };
      socket.on('error', () => {
        // An ICMP error on a send: the retransmissions and the timeout handle a server that is not there.
      });
      socket.on('message', (datagram, from) => {
        const transaction = transactions.find((t) => !t.outcome && t.address === from.address && t.server.port === from.port);
        if (!transaction) return;
        const answer = parseBindingResponse(datagram, transaction.id);
        if ('problem' in answer) {
          transaction.dropped = answer.problem;
          return;
        }
        transaction.outcome =
          answer.kind === 'mapped' ? { server: transaction.server, address: answer.address, port: answer.port } : { server: transaction.server, problem: `it answered with error ${answer.code}` };
        finishIfDone();
      });
      const timers: NodeJS.Timeout[] = [];
      let sent = 0;
      let rto = timings.initialRtoMs;
      const transmit = () => {
        for (const t of pending()) socket.send(bindingRequest(t.id), t.server.port, t.address);
        sent++;
        if (sent < TRANSMISSIONS) {
          timers.push(setTimeout(transmit, rto));
          rto *= 2;
        }
      };
      const done = () => {
        for (const timer of timers) clearTimeout(timer);
        resolve();
      };
      timers.push(setTimeout(done, timings.giveUpMs));
      transmit();
    });
  } finally {
    await new Promise<void>((resolve) => {
      try {
        socket.close(() => resolve());
      } catch {
        // Never bound: nothing to close.
        resolve();
      }
    });
  }
  for (const t of transactions) outcomes.push(t.outcome ?? { server: t.server, problem: t.dropped ? `no usable answer (the last dropped: ${t.dropped})` : 'no answer' });
  return outcomes;
}
