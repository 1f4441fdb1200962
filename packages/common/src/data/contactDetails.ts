import { parsePhoneNumberFromString } from 'libphonenumber-js';
import { z } from 'zod';
import { openJson, sealJson, type SealedValue } from './sealedJson.js';
import type { Keyring } from '../keys/keyring.js';
import { ErrorCode, GatewayError } from '../errors.js';
import { parseWith, schemas } from '../schemas/validation.js';

/**
 * One participant of a room's session as the CRM record of the contact gets it: the customer's
 * references and what their app gave in the join token. Phone numbers and device ids are kept
 * sealed and only until the destination has them.
 */
export interface SessionParticipant {
  participantId: string;
  role: string;
  externalId: string;
  crmContactId: string;
  /** E.164, or empty. */
  phoneNumber: string;
  deviceIds: string[];
  joinedAtMs: number;
  /**
   * The end user asked for erasure during the session: their contact details are gone, and
   * nothing they produce in it is kept or delivered (the external id stays until the room ends,
   * only to recognise what is theirs).
   */
  erased?: boolean;
}

export async function sealParticipants(keyring: Keyring, tenant: string, sessionId: string, participants: SessionParticipant[]): Promise<string> {
  return JSON.stringify(await sealJson(keyring, tenant, `session:${sessionId}`, participants));
}

const sealedSchema = z.object({
  wrapped: z.object({
    kekId: z.string().min(1).max(128),
    value: z
      .string()
      .min(1)
      .max(1_024)
      .regex(/^[A-Za-z0-9+/=]+$/),
  }),
  value: z
    .string()
    .min(1)
    .max(8 * 1024 * 1024)
    .regex(/^[A-Za-z0-9+/=]+$/),
});

/** What a sealed participant list must hold once opened (it was sealed by us, but is checked all the same). */
const participantsSchema = z
  .array(
    z.object({
      participantId: schemas.id(),
      role: z.string().max(16),
      externalId: schemas.text(256),
      crmContactId: z.string().max(64),
      phoneNumber: z.union([z.literal(''), z.string().regex(/^\+[1-9]\d{6,14}$/)]),
      deviceIds: z.array(z.string().min(1).max(256)).max(5),
      joinedAtMs: z.number().int().min(0),
      erased: z.boolean().optional(),
    }),
  )
  .max(10_000);

/** Opens a room's participants; a value that is not what we sealed is an INTERNAL error, never trusted. */
export async function openParticipants(keyring: Keyring, tenant: string, sessionId: string, sealed: string): Promise<SessionParticipant[]> {
  if (!sealed) return [];
  let envelope: SealedValue;
  try {
    envelope = parseWith(sealedSchema, JSON.parse(sealed), 'sealed participants', ErrorCode.INTERNAL);
  } catch (error) {
    // (JSON.parse's message quotes the input.)
    throw new GatewayError(ErrorCode.INTERNAL, 'the sealed participants are unreadable', { cause: error });
  }
  const opened = await openJson<unknown>(keyring, tenant, `session:${sessionId}`, envelope);
  return parseWith(participantsSchema, opened, 'sealed participants', ErrorCode.INTERNAL);
}

/** A phone number in E.164 (+14155550132), or undefined when it is not a valid number. */
export function normalizePhoneNumber(value: string, defaultCountry = 'US'): string | undefined {
  const parsed = parsePhoneNumberFromString(value, defaultCountry as never);
  return parsed?.isValid() ? parsed.number : undefined;
}
