import { describe, expect, it } from 'vitest';
import { AttachmentReady, RecordingReady, SessionEnded, TranscriptReady } from '@gateway/proto/gateway/events/v1/events';
import { Channel, ContactRecord } from '@gateway/proto/gateway/routing/v1/routing';
import { ErrorCode, GatewayError, type ArtifactStore } from '@gateway/common';
import { deliveryOf } from './events.js';

/** Never read in these tests: decoding does not touch the store. */
const store = {} as ArtifactStore;
const FUZZ_ITERATIONS = Number(process.env.FUZZ_ITERATIONS ?? 2_000);

/** A small deterministic generator, so a failure can be replayed with its seed. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}

const artifact = (artifactId: string) => ({ artifactId, kind: 'voice', contentType: 'audio/mpeg', participantId: 'PA_1', sizeBytes: 1000, durationMs: 5000, part: 0 });
const contact = { participantId: 'PA_1', role: 'end_user', externalId: 'ext-1', crmContactId: '' };
const sealed = JSON.stringify({ wrapped: { kekId: 'static:demo', value: 'AAAA' }, value: 'AAAA' });

const valid = {
  recording: () =>
    RecordingReady.fromPartial({ recording: { recordingId: 'REC_1', tenant: 'demo', room: 'r-1', state: 4, startedAtMs: 1, endedAtMs: 2, artifacts: [artifact('AR_1')] }, contacts: [contact] }),
  transcript: () =>
    TranscriptReady.fromPartial({
      tenant: 'demo',
      room: 'r-1',
      conversationId: 'CV_1',
      artifacts: [artifact('AR_2')],
      messageCount: 3,
      contacts: [contact],
      smartActions: [{ actionId: 'SA_1', kind: 'photo', state: 'completed', verified: false, completedAtMs: 5 }],
    }),
  attachment: () =>
    AttachmentReady.fromPartial({
      tenant: 'demo',
      room: 'r-1',
      conversationId: '',
      action: { actionId: 'SA_2', kind: 'photo', requestedAtMs: 1, completedAtMs: 2 },
      artifact: artifact('AR_3'),
      contact,
    }),
  session: () => SessionEnded.fromPartial({ tenant: 'demo', room: 'r-1', sessionId: 'SE_1', startedAtMs: 1, endedAtMs: 2, sealedParticipants: sealed }),
  contact: () =>
    ContactRecord.fromPartial({
      tenant: 'demo',
      contactId: 'CT_1',
      queueId: 'billing',
      channel: Channel.CHANNEL_VOICE,
      endUser: 'ext-1',
      crmContactId: '003000000000001AAA',
      requestedAtMs: 1_000,
      connectedAtMs: 31_000,
      endedAtMs: 331_000,
      waitSeconds: 30,
      handleSeconds: 300,
      agentId: 'AG_1',
      outcome: 'completed',
      transfers: [{ fromAgentId: 'AG_0', toQueueId: 'billing', toAgentId: '', warm: true, atMs: 20_000 }],
      disposition: 'Resolved',
      notes: 'Refund issued.\nCall back next week.',
      room: 'r-1',
      overflowedFrom: ['general'],
      callback: false,
    }),
};
const encoded = {
  recording: (e = valid.recording()) => ['gateway.demo.recording.ready', RecordingReady.encode(e).finish()] as const,
  transcript: (e = valid.transcript()) => ['gateway.demo.transcript.ready', TranscriptReady.encode(e).finish()] as const,
  attachment: (e = valid.attachment()) => ['gateway.demo.attachment.ready', AttachmentReady.encode(e).finish()] as const,
  session: (e = valid.session()) => ['gateway.demo.session.ended', SessionEnded.encode(e).finish()] as const,
  contact: (e = valid.contact()) => ['gateway.demo.contact.ended', ContactRecord.encode(e).finish()] as const,
};

const refusal = (subject: string, data: Uint8Array) => {
  try {
    deliveryOf(subject, data, store);
    return 'accepted';
  } catch (error) {
    expect(error, 'only GatewayErrors come out').toBeInstanceOf(GatewayError);
    return (error as GatewayError).code;
  }
};

describe('the events crm-sync takes', () => {
  it('takes each well-formed event', () => {
    for (const [subject, data] of Object.values(encoded).map((e) => e())) expect(refusal(subject, data), subject).toBe('accepted');
    expect(deliveryOf(...encoded.recording(), store)).toMatchObject({ deliveryId: 'REC_1', tenant: 'demo', kind: 'recording' });
  });

  it("refuses an event whose tenant is not its subject's: no one publishes for another tenant", () => {
    expect(refusal('gateway.globex.recording.ready', encoded.recording()[1])).toBe(ErrorCode.MALFORMED_MESSAGE);
    expect(refusal('gateway.globex.transcript.ready', encoded.transcript()[1])).toBe(ErrorCode.MALFORMED_MESSAGE);
    expect(refusal('gateway.globex.attachment.ready', encoded.attachment()[1])).toBe(ErrorCode.MALFORMED_MESSAGE);
    expect(refusal('gateway.globex.session.ended', encoded.session()[1])).toBe(ErrorCode.MALFORMED_MESSAGE);
    expect(refusal('gateway.globex.contact.ended', encoded.contact()[1])).toBe(ErrorCode.MALFORMED_MESSAGE);
    expect(refusal('gateway.demo.other.thing', encoded.recording()[1])).toBe(ErrorCode.MALFORMED_MESSAGE);
  });

  it('refuses ids, tenants, sizes and counts out of their ranges', () => {
    const recording = (change: (r: NonNullable<RecordingReady['recording']>) => void) => {
      const event = valid.recording();
      change(event.recording!);
      return refusal('gateway.demo.recording.ready', RecordingReady.encode(event).finish());
    };
    expect(recording((r) => (r.recordingId = 'REC_1.>'))).toBe(ErrorCode.MALFORMED_MESSAGE);
    expect(recording((r) => (r.recordingId = 'x'.repeat(65)))).toBe(ErrorCode.MALFORMED_MESSAGE);
    expect(recording((r) => (r.artifacts[0]!.artifactId = '../../other'))).toBe(ErrorCode.MALFORMED_MESSAGE);
    expect(recording((r) => (r.artifacts[0]!.sizeBytes = -1))).toBe(ErrorCode.MALFORMED_MESSAGE);
    expect(recording((r) => (r.artifacts[0]!.part = 1_000_000))).toBe(ErrorCode.MALFORMED_MESSAGE);
    expect(recording((r) => (r.artifacts[0]!.contentType = 'text/html\r\nx: y'))).toBe(ErrorCode.MALFORMED_MESSAGE);
    expect(recording((r) => (r.artifacts = Array.from({ length: 2_001 }, (_, i) => artifact(`AR_${i}`))))).toBe(ErrorCode.MALFORMED_MESSAGE);
    expect(recording((r) => (r.room = 'r 1'))).toBe(ErrorCode.MALFORMED_MESSAGE);
    expect(recording((r) => (r.startedAtMs = -5))).toBe(ErrorCode.MALFORMED_MESSAGE);
    expect(refusal(...encoded.session(SessionEnded.fromPartial({ ...valid.session(), sealedParticipants: 'not sealed' })))).toBe(ErrorCode.MALFORMED_MESSAGE);
    expect(refusal(...encoded.transcript(TranscriptReady.fromPartial({ ...valid.transcript(), contacts: [{ ...contact, externalId: 'x'.repeat(257) }] })))).toBe(ErrorCode.MALFORMED_MESSAGE);
    expect(refusal(...encoded.attachment(AttachmentReady.fromPartial({ ...valid.attachment(), artifact: undefined })))).toBe(ErrorCode.MALFORMED_MESSAGE);
  });

  describe("a contact-center contact's record", () => {
    const contactRefusal = (change: (r: ContactRecord) => void) => {
      const record = valid.contact();
      change(record);
      return refusal(...encoded.contact(record));
    };

    it('becomes a delivery of kind contact, the end user its one contact and the rest its metadata', () => {
      expect(deliveryOf(...encoded.contact(), store)).toEqual({
        deliveryId: 'contact-CT_1',
        kind: 'contact',
        tenant: 'demo',
        room: 'r-1',
        startedAtMs: 1_000,
        endedAtMs: 331_000,
        contacts: [{ participantId: '', role: 'end_user', externalId: 'ext-1', crmContactId: '003000000000001AAA' }],
        artifacts: [],
        metadata: {
          contactId: 'CT_1',
          queueId: 'billing',
          channel: 'voice',
          requestedAtMs: 1_000,
          connectedAtMs: 31_000,
          endedAtMs: 331_000,
          waitSeconds: 30,
          handleSeconds: 300,
          agentId: 'AG_1',
          outcome: 'completed',
          transfers: [{ fromAgentId: 'AG_0', toQueueId: 'billing', toAgentId: undefined, warm: true, atMs: 20_000 }],
          disposition: 'Resolved',
          notes: 'Refund issued.\nCall back next week.',
          overflowedFrom: ['general'],
          callback: false,
        },
      });
    });

    it('leaves out what an abandoned contact never had', () => {
      const record = ContactRecord.fromPartial({
        ...valid.contact(),
        connectedAtMs: 0,
        agentId: '',
        handleSeconds: 0,
        outcome: 'abandoned',
        transfers: [],
        disposition: '',
        notes: '',
        room: '',
        overflowedFrom: [],
      });
      const delivery = deliveryOf(...encoded.contact(record), store);
      expect(delivery).toMatchObject({
        deliveryId: 'contact-CT_1',
        room: '',
        metadata: { outcome: 'abandoned', connectedAtMs: undefined, agentId: undefined, disposition: undefined, notes: undefined },
      });
      expect(JSON.parse(JSON.stringify(delivery.metadata))).not.toHaveProperty('notes');
    });

    it('refuses a record out of its bounds', () => {
      expect(contactRefusal(() => undefined)).toBe('accepted');
      expect(contactRefusal((r) => (r.notes = 'n'.repeat(2_000)))).toBe('accepted');
      expect(contactRefusal((r) => (r.notes = 'n'.repeat(2_001)))).toBe(ErrorCode.MALFORMED_MESSAGE);
      expect(contactRefusal((r) => (r.notes = 'ok\u0000'))).toBe(ErrorCode.MALFORMED_MESSAGE);
      expect(contactRefusal((r) => (r.disposition = 'd'.repeat(65)))).toBe(ErrorCode.MALFORMED_MESSAGE);
      expect(contactRefusal((r) => (r.disposition = 'two\nlines'))).toBe(ErrorCode.MALFORMED_MESSAGE);
      expect(contactRefusal((r) => (r.transfers = Array.from({ length: 51 }, () => ({ fromAgentId: 'AG_0', toQueueId: 'q', toAgentId: '', warm: false, atMs: 1 }))))).toBe(ErrorCode.MALFORMED_MESSAGE);
      expect(contactRefusal((r) => (r.contactId = ''))).toBe(ErrorCode.MALFORMED_MESSAGE);
      expect(contactRefusal((r) => (r.contactId = 'x'.repeat(57)))).toBe(ErrorCode.MALFORMED_MESSAGE);
      expect(contactRefusal((r) => (r.contactId = 'CT_1.>'))).toBe(ErrorCode.MALFORMED_MESSAGE);
      expect(contactRefusal((r) => (r.queueId = 'a b'))).toBe(ErrorCode.MALFORMED_MESSAGE);
      expect(contactRefusal((r) => (r.agentId = 'x'.repeat(65)))).toBe(ErrorCode.MALFORMED_MESSAGE);
      expect(contactRefusal((r) => (r.endUser = ''))).toBe(ErrorCode.MALFORMED_MESSAGE);
      expect(contactRefusal((r) => (r.endUser = 'x'.repeat(257)))).toBe(ErrorCode.MALFORMED_MESSAGE);
      expect(contactRefusal((r) => (r.crmContactId = 'x'.repeat(257)))).toBe(ErrorCode.MALFORMED_MESSAGE);
      expect(contactRefusal((r) => (r.outcome = 'lost'))).toBe(ErrorCode.MALFORMED_MESSAGE);
      expect(contactRefusal((r) => (r.channel = Channel.CHANNEL_UNSPECIFIED))).toBe(ErrorCode.MALFORMED_MESSAGE);
      expect(contactRefusal((r) => (r.channel = 7 as Channel))).toBe(ErrorCode.MALFORMED_MESSAGE);
      expect(contactRefusal((r) => (r.requestedAtMs = -1))).toBe(ErrorCode.MALFORMED_MESSAGE);
      expect(contactRefusal((r) => (r.room = 'r 1'))).toBe(ErrorCode.MALFORMED_MESSAGE);
      expect(contactRefusal((r) => (r.overflowedFrom = Array.from({ length: 51 }, () => 'q')))).toBe(ErrorCode.MALFORMED_MESSAGE);
    });
  });

  it(`never throws anything but MALFORMED_MESSAGE for mutated or random bytes (${FUZZ_ITERATIONS} seeded cases)`, () => {
    const seed = Number(process.env.FUZZ_SEED ?? 20_251_105);
    const rand = random(seed);
    const pick = <T>(items: readonly T[]) => items[Math.floor(rand() * items.length)]!;
    const subjects = [
      'gateway.demo.recording.ready',
      'gateway.demo.transcript.ready',
      'gateway.demo.attachment.ready',
      'gateway.demo.session.ended',
      'gateway.demo.contact.ended',
      'gateway.demo.x',
      'gateway..recording.ready',
      `gateway.${'a'.repeat(65)}.recording.ready`,
    ];
    const outcomes = new Map<string, number>();
    for (let i = 0; i < FUZZ_ITERATIONS; i++) {
      const [subject, base] = pick(Object.values(encoded))();
      let data: Uint8Array;
      const mode = rand();
      if (mode < 0.3) {
        data = Uint8Array.from({ length: Math.floor(rand() * 200) }, () => Math.floor(rand() * 256));
      } else if (mode < 0.8) {
        // Flipped, dropped and inserted bytes of a valid event.
        const bytes = [...base];
        for (let n = 1 + Math.floor(rand() * 4); n > 0; n--) {
          const at = Math.floor(rand() * bytes.length);
          const action = rand();
          if (action < 0.4) bytes[at] = Math.floor(rand() * 256);
          else if (action < 0.7) bytes.splice(at, 1);
          else bytes.splice(at, 0, Math.floor(rand() * 256));
        }
        data = Uint8Array.from(bytes);
      } else {
        data = base.slice(0, Math.floor(rand() * base.length));
      }
      const outcome = (() => {
        try {
          deliveryOf(rand() < 0.85 ? subject : pick(subjects), data, store);
          return 'accepted';
        } catch (error) {
          if (!(error instanceof GatewayError)) throw new Error(`seed ${seed}, case ${i}: ${String(error)}`);
          return error.code;
        }
      })();
      outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
    }
    // Some survive a mutation (a changed byte inside a string); everything else is refused as malformed.
    expect([...outcomes.keys()].sort()).toEqual(['MALFORMED_MESSAGE', 'accepted']);
    expect(outcomes.get('MALFORMED_MESSAGE')!).toBeGreaterThan(FUZZ_ITERATIONS / 2);
  });
});
