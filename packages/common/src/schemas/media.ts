import { z } from 'zod';

/**
 * The shapes of mediasoup's negotiation objects (RTP parameters and capabilities, DTLS
 * parameters) as a client or a peer may send them: each field typed and bounded. mediasoup
 * checks the semantics itself; these checks make sure nothing of another type, size or alphabet
 * reaches it. Fields mediasoup does not know are dropped. Used by signaling on client frames and
 * by the SFU on gRPC requests.
 */

/** Printable ASCII without spaces: MIME types, URIs, rids, cnames, fingerprints. */
const ascii = (max: number) =>
  z
    .string()
    .min(1)
    .max(max)
    .regex(/^[\x21-\x7e]+$/, 'must be printable ASCII without spaces');
/** The same where an empty value is how a client says "none" (a browser's empty CNAME). */
const asciiOrEmpty = (max: number) =>
  z
    .string()
    .max(max)
    .regex(/^[\x21-\x7e]*$/, 'must be printable ASCII without spaces');
const u8 = () => z.number().int().min(0).max(255);
const u32 = () => z.number().int().min(0).max(0xffffffff);
const mediaKind = z.enum(['audio', 'video']);

/** Codec format parameters (`profile-level-id`, `useinbandfec`, `apt`): a few short scalar values. */
const codecParameters = z
  .record(
    ascii(64),
    z.union([
      z
        .string()
        .max(256)
        .regex(/^[\x20-\x7e]*$/, 'must be printable ASCII'),
      z.number().finite(),
    ]),
  )
  .refine((value) => Object.keys(value).length <= 32, 'at most 32 parameters');

const rtcpFeedback = z.object({
  type: ascii(32),
  parameter: z
    .string()
    .max(32)
    .regex(/^[\x21-\x7e]*$/, 'must be printable ASCII without spaces')
    .optional(),
});

export const rtpCodecParametersSchema = z.object({
  mimeType: ascii(64),
  payloadType: z.number().int().min(0).max(127),
  clockRate: z.number().int().min(1).max(1_000_000),
  channels: z.number().int().min(1).max(8).optional(),
  parameters: codecParameters.optional(),
  rtcpFeedback: z.array(rtcpFeedback).max(16).optional(),
});

export const rtpEncodingParametersSchema = z.object({
  ssrc: u32().optional(),
  rid: ascii(32).optional(),
  codecPayloadType: z.number().int().min(0).max(127).optional(),
  rtx: z.object({ ssrc: u32() }).optional(),
  dtx: z.boolean().optional(),
  scalabilityMode: ascii(16).optional(),
  scaleResolutionDownBy: z.number().finite().min(1).max(256).optional(),
  maxBitrate: z.number().int().min(0).max(1_000_000_000).optional(),
  maxFramerate: z.number().finite().min(0).max(1_000).optional(),
  active: z.boolean().optional(),
});

export const rtpParametersSchema = z.object({
  mid: asciiOrEmpty(32).optional(),
  codecs: z.array(rtpCodecParametersSchema).min(1).max(32),
  headerExtensions: z
    .array(z.object({ uri: ascii(256), id: z.number().int().min(1).max(255), encrypt: z.boolean().optional(), parameters: codecParameters.optional() }))
    .max(32)
    .optional(),
  encodings: z.array(rtpEncodingParametersSchema).max(8).optional(),
  rtcp: z.object({ cname: asciiOrEmpty(255).optional(), reducedSize: z.boolean().optional(), mux: z.boolean().optional() }).optional(),
});

export const rtpCapabilitiesSchema = z.object({
  codecs: z
    .array(
      z.object({
        kind: mediaKind,
        mimeType: ascii(64),
        preferredPayloadType: z.number().int().min(0).max(127).optional(),
        clockRate: z.number().int().min(1).max(1_000_000),
        channels: z.number().int().min(1).max(8).optional(),
        parameters: codecParameters.optional(),
        rtcpFeedback: z.array(rtcpFeedback).max(16).optional(),
      }),
    )
    .max(64)
    .optional(),
  headerExtensions: z
    .array(
      z.object({
        kind: mediaKind,
        uri: ascii(256),
        preferredId: u8(),
        preferredEncrypt: z.boolean().optional(),
        direction: z.enum(['sendrecv', 'sendonly', 'recvonly', 'inactive']).optional(),
      }),
    )
    .max(64)
    .optional(),
});

export const dtlsParametersSchema = z.object({
  role: z.enum(['auto', 'client', 'server']).optional(),
  fingerprints: z
    .array(
      z.object({
        algorithm: z.enum(['sha-1', 'sha-224', 'sha-256', 'sha-384', 'sha-512']),
        value: z
          .string()
          .min(2)
          .max(200)
          .regex(/^[0-9A-Fa-f:]+$/, 'must be hexadecimal pairs'),
      }),
    )
    .min(1)
    .max(8),
});

/** SRTP keys of a pipe between SFU nodes (mediasoup's SrtpParameters). */
export const srtpParametersSchema = z.object({
  cryptoSuite: z.enum(['AEAD_AES_256_GCM', 'AEAD_AES_128_GCM', 'AES_CM_128_HMAC_SHA1_80', 'AES_CM_128_HMAC_SHA1_32']),
  keyBase64: z
    .string()
    .min(16)
    .max(128)
    .regex(/^[A-Za-z0-9+/]+={0,2}$/, 'must be base64'),
});
