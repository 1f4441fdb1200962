import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { bindingRequest, MAX_STUN_MESSAGE_BYTES, parseBindingResponse } from './stun.js';
import { checkAnnouncedAddress } from './publicAddress.js';

const hex = (text: string) => Buffer.from(text.replace(/\s+/g, ''), 'hex');

/** RFC 5769 test vectors: 2.2 (IPv4) and 2.3 (IPv6) Binding success responses, with MESSAGE-INTEGRITY and FINGERPRINT. */
const transactionId = hex('b7e7a701 bc34d686 fa87dfae');
const ipv4Response = hex(`
  0101003c 2112a442 b7e7a701 bc34d686 fa87dfae
  8022000b 74657374 20766563 746f7220
  00200008 0001a147 e112a643
  00080014 2b91f599 fd9e90c3 8c7489f9 2af9ba53 f06be7d7
  80280004 c07d4c96`);
const ipv6Response = hex(`
  01010048 2112a442 b7e7a701 bc34d686 fa87dfae
  8022000b 74657374 20766563 746f7220
  00200014 0002a147 0113a9fa a5d3f179 bc25f4b5 bed2b9d9
  00080014 a382954e 4be67bf1 1784c97c 8292c275 bfe3ed41
  80280004 c8fb0b4c`);

describe('the STUN Binding response parser', () => {
  it('reads the XOR-MAPPED-ADDRESS of the RFC 5769 vectors, FINGERPRINT checked', () => {
    expect(parseBindingResponse(ipv4Response, transactionId)).toEqual({ kind: 'mapped', address: '192.0.2.1', port: 32853 });
    const v6 = parseBindingResponse(ipv6Response, transactionId);
    expect(v6).toMatchObject({ kind: 'mapped', port: 32853 });
    expect(checkAnnouncedAddress((v6 as { address: string }).address, true)).toEqual({ problem: 'is not a public unicast address' });
    expect((v6 as { address: string }).address).toBe('2001:db8:1234:5678:11:2233:4455:6677');
  });

  it('drops an answer to another transaction', () => {
    const other = Buffer.from(transactionId);
    other[11]! ^= 1;
    expect(parseBindingResponse(ipv4Response, other)).toEqual({ problem: 'another transaction' });
  });

  it('drops an answer whose mapped address was changed on the way (FINGERPRINT)', () => {
    const changed = Buffer.from(ipv4Response);
    changed[20 + 16 + 11]! ^= 0x04;
    expect(parseBindingResponse(changed, transactionId)).toEqual({ problem: 'a wrong FINGERPRINT' });
  });

  it('drops truncated, oversized and malformed messages', () => {
    for (let length = 0; length < ipv4Response.length; length++) expect(parseBindingResponse(ipv4Response.subarray(0, length), transactionId)).toHaveProperty('problem');
    expect(parseBindingResponse(Buffer.concat([ipv4Response, Buffer.alloc(MAX_STUN_MESSAGE_BYTES)]), transactionId)).toEqual({ problem: 'larger than a Binding response' });
    // A request echoed back is not a response.
    expect(parseBindingResponse(bindingRequest(transactionId), transactionId)).toEqual({ problem: 'not a Binding response' });
  });

  it('drops a success carrying an unknown comprehension-required attribute, or no XOR-MAPPED-ADDRESS', () => {
    const unknown = Buffer.concat([ipv4Response.subarray(0, 20), hex('7f010004 00000000'), ipv4Response.subarray(20, 20 + 16 + 12)]);
    unknown.writeUInt16BE(unknown.length - 20, 2);
    expect(parseBindingResponse(unknown, transactionId)).toEqual({ problem: 'an unknown comprehension-required attribute 0x7f01' });
    const bare = Buffer.concat([ipv4Response.subarray(0, 20), ipv4Response.subarray(20, 36)]);
    bare.writeUInt16BE(16, 2);
    expect(parseBindingResponse(bare, transactionId)).toEqual({ problem: 'a success without XOR-MAPPED-ADDRESS' });
  });

  it('reads an error response as one', () => {
    const error = Buffer.concat([hex('01110010 2112a442'), transactionId, hex('0009000c 00000401 556e6175 74686f72')]);
    expect(parseBindingResponse(error, transactionId)).toEqual({ kind: 'error', code: 401 });
  });

  it('never throws nor finds an address in random bytes, with or without a valid header', () => {
    for (let i = 0; i < 20_000; i++) {
      const body = randomBytes(Math.floor(Math.random() * 200));
      const header = hex('0101 0000 2112a442');
      header.writeUInt16BE(body.length, 2);
      for (const datagram of [randomBytes(Math.floor(Math.random() * 80)), Buffer.concat([header, transactionId, body])]) {
        const answer = parseBindingResponse(datagram, transactionId);
        if ('kind' in answer && answer.kind === 'mapped') {
          // Only possible if the random attributes happened to form one: then it is well formed.
          expect(answer.port).toBeLessThan(65536);
        }
      }
    }
  });
});

describe('the announced address check', () => {
  it('takes one public unicast address, canonical', () => {
    expect(checkAnnouncedAddress('34.120.7.9', false)).toEqual({ address: '34.120.7.9' });
    expect(checkAnnouncedAddress('::ffff:34.120.7.9', false)).toEqual({ address: '34.120.7.9' });
    expect(checkAnnouncedAddress('2600:1f18:0:0::5', false)).toEqual({ address: '2600:1f18::5' });
  });

  it('refuses private, loopback, link-local and reserved addresses unless allowed, and never what no client reaches', () => {
    for (const address of ['10.0.0.1', '172.16.3.4', '192.168.0.1', '127.0.0.1', '169.254.169.254', '100.64.0.1', 'fe80::1', 'fd00::1', '::1'])
      expect([address, checkAnnouncedAddress(address, false)]).toEqual([address, { problem: 'is not a public unicast address' }]);
    expect(checkAnnouncedAddress('10.0.0.1', true)).toEqual({ address: '10.0.0.1' });
    for (const address of ['0.0.0.0', '255.255.255.255', '224.0.0.1', '203.0.113.9', '2001:db8::1']) expect(checkAnnouncedAddress(address, true)).toHaveProperty('problem');
  });

  it('refuses what is not one address, without quoting it', () => {
    for (const text of ['', ' 34.120.7.9', '34.120.7.9\n', '34.120.7.9,34.120.7.10', 'ec2-34-120-7-9.compute.amazonaws.com', '034.120.7.9', '34.120.7.0/24', 'fe80::1%eth0', 'x'.repeat(5000)]) {
      const checked = checkAnnouncedAddress(text, true);
      expect(checked).toHaveProperty('problem');
      if (text.length > 0) expect(JSON.stringify(checked)).not.toContain(text.trim() || '\u0000');
    }
  });
});
