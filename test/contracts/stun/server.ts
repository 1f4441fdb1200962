import dgram from 'node:dgram';
import { crc32 } from 'node:zlib';

/**
 * A STUN server on 127.0.0.1 that answers Binding requests (RFC 5389) with what a test decides:
 * an honest-looking success claiming any mapped address (a public one, a private one, or one that
 * disagrees with another server), and before it any number of hostile datagrams. The honest
 * server of the tests is coturn; this one is for the answers coturn would never give.
 */

const MAGIC_COOKIE = 0x2112a442;

export interface BindingRequest {
  transactionId: Buffer;
  from: { address: string; port: number };
}

/** What the server sends back for one request, in order. */
export type Reply = (request: BindingRequest) => Buffer[];

export class StunResponder {
  /** Binding requests received. */
  requests = 0;

  private constructor(
    private readonly socket: dgram.Socket,
    private reply: Reply,
  ) {
    socket.on('message', (datagram, from) => {
      if (datagram.length < 20 || datagram.readUInt16BE(0) !== 0x0001 || datagram.readUInt32BE(4) !== MAGIC_COOKIE) return;
      this.requests++;
      const request = { transactionId: Buffer.from(datagram.subarray(8, 20)), from: { address: from.address, port: from.port } };
      for (const answer of this.reply(request)) socket.send(answer, from.port, from.address);
    });
  }

  static async start(reply: Reply): Promise<StunResponder> {
    const socket = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
    return new StunResponder(socket, reply);
  }

  /** `127.0.0.1:<port>`, as SFU_STUN_SERVERS lists it. */
  get address(): string {
    return `127.0.0.1:${this.socket.address().port}`;
  }

  answerWith(reply: Reply): void {
    this.reply = reply;
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.socket.close(() => resolve()));
  }
}

/** A Binding success response to `transactionId` claiming `address:port` (IPv4), with SOFTWARE and FINGERPRINT as coturn sends them. */
export function bindingSuccess(transactionId: Buffer, address: string, port: number, options: { fingerprint?: boolean; type?: number } = {}): Buffer {
  const mapped = Buffer.alloc(12);
  mapped.writeUInt16BE(0x0020, 0);
  mapped.writeUInt16BE(8, 2);
  mapped[5] = 0x01;
  mapped.writeUInt16BE(port ^ (MAGIC_COOKIE >>> 16), 6);
  const ip = address.split('.').reduce((value, octet) => (value << 8) | Number(octet), 0) >>> 0;
  mapped.writeUInt32BE((ip ^ MAGIC_COOKIE) >>> 0, 8);
  const software = Buffer.from('\x80\x22\x00\x08contract', 'latin1');
  let body = Buffer.concat([mapped, software]);
  const header = (length: number) => {
    const h = Buffer.alloc(20);
    h.writeUInt16BE(options.type ?? 0x0101, 0);
    h.writeUInt16BE(length, 2);
    h.writeUInt32BE(MAGIC_COOKIE, 4);
    transactionId.copy(h, 8);
    return h;
  };
  if (options.fingerprint === false) return Buffer.concat([header(body.length), body]);
  const withoutFingerprint = Buffer.concat([header(body.length + 8), body]);
  const fingerprint = Buffer.alloc(8);
  fingerprint.writeUInt16BE(0x8028, 0);
  fingerprint.writeUInt16BE(4, 2);
  fingerprint.writeUInt32BE((crc32(withoutFingerprint) ^ 0x5354554e) >>> 0, 4);
  body = Buffer.concat([withoutFingerprint, fingerprint]);
  return body;
}

/**
 * Datagrams no client should believe, picked by `random` (seeded): random bytes of any length,
 * an honest answer to another transaction, one far over any Binding response, one bit flipped in
 * an honest answer (its FINGERPRINT no longer matches), a truncated one, an error response.
 */
export const HOSTILE_KINDS = ['bytes', 'otherTransaction', 'oversized', 'bitFlip', 'truncated', 'errorResponse', 'otherAddressNoFingerprintOtherId'] as const;

export function hostileDatagram(random: () => number, request: BindingRequest, claimed: { address: string; port: number }, kind?: (typeof HOSTILE_KINDS)[number]): Buffer {
  const pick = <T>(values: readonly T[]): T => values[Math.floor(random() * values.length)]!;
  const honest = () => bindingSuccess(request.transactionId, claimed.address, claimed.port);
  switch (kind ?? pick(HOSTILE_KINDS)) {
    case 'bytes':
      return Buffer.from(Array.from({ length: Math.floor(random() * 120) }, () => Math.floor(random() * 256)));
    case 'otherTransaction': {
      const other = Buffer.from(request.transactionId);
      other[Math.floor(random() * 12)]! ^= 1 + Math.floor(random() * 255);
      return bindingSuccess(other, '34.1.2.3', claimed.port);
    }
    case 'oversized': {
      const padding = Buffer.alloc(4000);
      padding.writeUInt16BE(0x8022, 0);
      padding.writeUInt16BE(3996, 2);
      const message = Buffer.concat([honest().subarray(0, 20), padding, honest().subarray(20)]);
      message.writeUInt16BE(message.length - 20, 2);
      return message;
    }
    case 'bitFlip': {
      const message = honest();
      // In the mapped address: only the FINGERPRINT tells.
      const byte = 28 + Math.floor(random() * 4);
      message[byte]! ^= 1 << Math.floor(random() * 8);
      return message;
    }
    case 'truncated': {
      const message = honest();
      return message.subarray(0, 20 + Math.floor(random() * (message.length - 20)));
    }
    case 'errorResponse': {
      // To another transaction, so the honest answer that follows is still awaited.
      const other = Buffer.from(request.transactionId);
      other[0]! ^= 0xff;
      return bindingSuccess(other, claimed.address, claimed.port, { type: 0x0111 });
    }
    case 'otherAddressNoFingerprintOtherId': {
      const other = Buffer.from(request.transactionId);
      other[11]! ^= 0x01;
      return bindingSuccess(other, '35.9.9.9', claimed.port, { fingerprint: false });
    }
  }
}
