import { z } from 'zod';
import { schemas } from '@gateway/common';

const jwt = z
  .string()
  .max(8192)
  .regex(/^[\x21-\x7e]*$/, 'must be printable ASCII');
const optionalId = schemas.optionalId().default('');
const id = schemas.id();
const reason = schemas.text(64).default('');
const empty = z.object({});
const contact = z.object({ contactId: id });

/**
 * The schema of every request of the desk protocol (proto/gateway/routing/v1/desk.proto), in the
 * proto3 JSON mapping the SDK sends. Types are checked, never coerced; unknown fields dropped.
 */
export const deskRequestSchemas = {
  hello: z.object({ token: jwt, protocolVersion: schemas.uint32().max(1_000).default(0) }),
  requestSupport: z.object({
    queue: id,
    channel: z.enum(['voice', 'video', 'chat']),
    // Checked again by routing (32 fields, 4 KiB of JSON): here only bounded.
    context: z.record(z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'context keys are 1-64 letters, digits, _ . or -'), schemas.text(1_024)).default({}),
    contactId: optionalId,
  }),
  leaveQueue: empty,
  setStatus: z.object({ status: z.enum(['available', 'away']), reason }),
  accept: contact,
  decline: contact,
  transfer: z
    .object({ contactId: id, queue: optionalId, agentId: optionalId, warm: z.boolean().default(false) })
    .refine((t) => t.queue !== '' || t.agentId !== '', { message: 'name a queue or an agent' }),
  completeTransfer: contact,
  end: contact,
  wrapUp: z.object({
    contactId: id,
    disposition: schemas.text(64).default(''),
    notes: schemas.text(2_000, { lines: true }).default(''),
    next: z.enum(['available', 'away']).default('available'),
    reason,
  }),
  queueView: empty,
  supervise: z.object({ contactId: id, mode: z.enum(['monitor', 'whisper', 'barge']) }),
  ping: empty,
} satisfies Record<string, z.ZodType>;

export type DeskMethod = keyof typeof deskRequestSchemas;

/** Which desk roles may ask each method (hello and ping: anyone). */
export const deskMethodRoles: Record<Exclude<DeskMethod, 'hello' | 'ping'>, 'end_user' | 'agent' | 'supervisor'> = {
  requestSupport: 'end_user',
  leaveQueue: 'end_user',
  setStatus: 'agent',
  accept: 'agent',
  decline: 'agent',
  transfer: 'agent',
  completeTransfer: 'agent',
  end: 'agent',
  wrapUp: 'agent',
  queueView: 'supervisor',
  supervise: 'supervisor',
};
