import { jetstream } from '@nats-io/jetstream';
import { natsHeadersWithTrace, subjects, type NatsConnection } from '@gateway/common';
import { ContactRecord } from '@gateway/proto/gateway/routing/v1/routing';
import type { RoutingEngine } from '../engine/RoutingEngine.js';
import type { Contact, PendingRecord } from '../engine/model.js';
import { MAX_PENDING_RECORDS } from '../state/RoutingRecords.js';
import { channelOf } from './TenantViews.js';

/**
 * What a contact's record says before the agent wraps up (kept on the agent's record, so a new
 * owner still has it): everything but the disposition and notes.
 */
export function pendingRecordOf(contact: Readonly<Contact>, endedAtMs: number): PendingRecord {
  const about = contact.about;
  return {
    contactId: contact.contactId,
    queueId: contact.queueId,
    channel: contact.channel,
    endUser: about?.endUser ?? '',
    ...(about?.crmContactId ? { crmContactId: about.crmContactId } : {}),
    requestedAtMs: contact.requestedAtMs,
    connectedAtMs: about?.connectedAtMs ?? 0,
    endedAtMs,
    agentId: contact.agentId ?? '',
    room: about?.room ?? '',
    transfers: about?.transfers ?? [],
    overflowedFrom: about?.overflowedFrom ?? [],
    callback: contact.callback ?? false,
  };
}

/**
 * An agent's part of a warm transfer is over: it waits for their wrap-up on their record, like a
 * contact they ended, marked as a part (its wrap-up sends nothing; the contact's record is the
 * last agent's). Beyond the bound the oldest part is dropped, never a contact's record: a part
 * has nothing to send.
 */
export function holdPartRecord(engine: RoutingEngine, agentId: string, contact: Readonly<Contact>, endedAtMs: number): void {
  const agent = engine.agents.get(agentId);
  if (!agent) return;
  const pending = [...(agent.pendingRecords ?? []), { ...pendingRecordOf(contact, endedAtMs), agentId, handedOver: true }];
  if (pending.length > MAX_PENDING_RECORDS)
    pending.splice(
      pending.findIndex((p) => p.handedOver),
      1,
    );
  agent.pendingRecords = pending;
  engine.touch('agents', agentId);
}

/** The record crm-sync delivers (gateway.routing.v1 ContactRecord). */
export function contactRecordOf(
  tenant: string,
  pending: PendingRecord,
  outcome: 'completed' | 'abandoned',
  wrapUp: { disposition: string; notes: string } = { disposition: '', notes: '' },
): ContactRecord {
  const answered = pending.connectedAtMs > 0;
  return {
    tenant,
    contactId: pending.contactId,
    queueId: pending.queueId,
    channel: channelOf[pending.channel],
    endUser: pending.endUser,
    requestedAtMs: pending.requestedAtMs,
    connectedAtMs: pending.connectedAtMs,
    endedAtMs: pending.endedAtMs,
    waitSeconds: Math.max(0, Math.round(((answered ? pending.connectedAtMs : pending.endedAtMs) - pending.requestedAtMs) / 1000)),
    handleSeconds: answered ? Math.max(0, Math.round((pending.endedAtMs - pending.connectedAtMs) / 1000)) : 0,
    agentId: pending.agentId,
    outcome,
    transfers: pending.transfers.map((t) => ({ fromAgentId: t.fromAgentId, toQueueId: t.toQueueId, toAgentId: t.toAgentId ?? '', warm: t.warm, atMs: t.atMs })),
    disposition: wrapUp.disposition,
    notes: wrapUp.notes,
    room: pending.room,
    overflowedFrom: pending.overflowedFrom,
    callback: pending.callback,
    crmContactId: pending.crmContactId ?? '',
  };
}

/** Publishes a contact's record for crm-sync; its message id makes a second publish of the same contact a no-op. */
export async function publishContactRecord(nc: NatsConnection, record: ContactRecord): Promise<void> {
  await jetstream(nc).publish(subjects.contactEnded(record.tenant), ContactRecord.encode(record).finish(), {
    msgID: `contact-${record.contactId}`,
    timeout: 10_000,
    headers: natsHeadersWithTrace(),
  });
}
