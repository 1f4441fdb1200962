import { describe, expect, it } from 'vitest';
import { PROTOCOL_VERSION, peerProtocolVersion, supportsChat, supportsResume, supportsSmartActions } from './protocol.js';
import { ProtocolVersion } from '@gateway/proto/gateway/signaling/v1/signaling';

describe('protocol version', () => {
  it("is the proto enum's current version", () => {
    expect(PROTOCOL_VERSION).toBe(ProtocolVersion.PROTOCOL_VERSION_CURRENT);
  });

  it('takes a version left out as the first one and a newer peer as this one', () => {
    expect(peerProtocolVersion(0)).toBe(1);
    expect(peerProtocolVersion(-3)).toBe(1);
    expect(peerProtocolVersion(1.5)).toBe(1);
    expect(peerProtocolVersion(1)).toBe(1);
    expect(peerProtocolVersion(PROTOCOL_VERSION + 7)).toBe(PROTOCOL_VERSION);
  });

  it('answers what version 1 brought for every client', () => {
    for (const version of [0, 1, PROTOCOL_VERSION + 1]) {
      expect(supportsResume(version)).toBe(true);
      expect(supportsChat(version)).toBe(true);
      expect(supportsSmartActions(version)).toBe(true);
    }
  });
});
