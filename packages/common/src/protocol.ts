/**
 * The version of the signaling protocol (gateway.signaling.v1), shared by the server and, later,
 * the SDK. Browser-safe: it imports nothing, so a bundle can take it alone.
 *
 * Both sides send their version: the client in JoinRequest/ResumeRequest.protocolVersion, the
 * server in JoinResponse.protocolVersion. Each then speaks what both know, asking the
 * supports*() helpers below with the other side's version. A change that needs both sides to
 * know about it bumps PROTOCOL_VERSION and adds a helper here, so old clients keep working.
 */

/** The version this code speaks (ProtocolVersion.PROTOCOL_VERSION_CURRENT in the proto). */
export const PROTOCOL_VERSION = 1;

/**
 * The version a peer speaks, from the number it sent: 0 (the field left out, as clients written
 * before it did) is version 1, the first; a peer newer than this code is spoken to as this one.
 */
export function peerProtocolVersion(sent: number): number {
  if (!Number.isInteger(sent) || sent <= 0) return 1;
  return Math.min(sent, PROTOCOL_VERSION);
}

/** Taking a dropped session back with its resume token (ResumeRequest). */
export function supportsResume(version: number): boolean {
  return peerProtocolVersion(version) >= 1;
}

/** In-session chat (sendMessage, message notifications). */
export function supportsChat(version: number): boolean {
  return peerProtocolVersion(version) >= 1;
}

/** Smart Actions and device keys (requestSmartAction ... registerDeviceKey). */
export function supportsSmartActions(version: number): boolean {
  return peerProtocolVersion(version) >= 1;
}
