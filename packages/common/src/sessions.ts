import { parsePhoneNumberFromString } from 'libphonenumber-js';
import { openJson, sealJson, type Keyring, type SealedValue } from './artifacts.js';

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
}

export async function sealParticipants(keyring: Keyring, tenant: string, sessionId: string, participants: SessionParticipant[]): Promise<string> {
  return JSON.stringify(await sealJson(keyring, tenant, `session:${sessionId}`, participants));
}

export async function openParticipants(keyring: Keyring, tenant: string, sessionId: string, sealed: string): Promise<SessionParticipant[]> {
  if (!sealed) return [];
  return openJson<SessionParticipant[]>(keyring, tenant, `session:${sessionId}`, JSON.parse(sealed) as SealedValue);
}

/** A phone number in E.164 (+14155550132), or undefined when it is not a valid number. */
export function normalizePhoneNumber(value: string, defaultCountry = 'US'): string | undefined {
  const parsed = parsePhoneNumberFromString(value, defaultCountry as never);
  return parsed?.isValid() ? parsed.number : undefined;
}
