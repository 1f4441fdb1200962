/**
 * What tests send the SFU as a device would: Opus and VP8 as a produce request carries them, and
 * capabilities that receive both. Each producer of a room needs its own `ssrc`.
 */
export const opusRtpParameters = (ssrc = 1111) => ({ codecs: [{ mimeType: 'audio/opus', payloadType: 111, clockRate: 48000, channels: 2 }], encodings: [{ ssrc }] });
export const vp8RtpParameters = (ssrc = 2222) => ({ codecs: [{ mimeType: 'video/VP8', payloadType: 96, clockRate: 90000 }], encodings: [{ ssrc }] });

export const deviceCapabilities = {
  codecs: [
    { kind: 'audio', mimeType: 'audio/opus', clockRate: 48000, channels: 2, preferredPayloadType: 100, parameters: {} },
    { kind: 'video', mimeType: 'video/VP8', clockRate: 90000, preferredPayloadType: 101, parameters: {}, rtcpFeedback: [{ type: 'nack' }, { type: 'ccm', parameter: 'fir' }] },
  ],
  headerExtensions: [],
};
