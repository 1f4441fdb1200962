import { jetstream } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { streams, subjects } from '@gateway/common';
import { AttachmentReady, TranscriptReady } from '@gateway/proto/gateway/events/v1/events';

/** Reads one subject of a JetStream stream from its first message, waiting for the events a test looks for. */
export interface EventReader<T> {
  /** The first event `match` accepts; fails naming `what` when none comes within `timeoutMs`. */
  next(match: (event: T) => boolean, what: string, timeoutMs?: number): Promise<T>;
}

export async function readEvents<T>(nc: NatsConnection, stream: string, subject: string, decode: (data: Uint8Array) => T): Promise<EventReader<T>> {
  const consumer = await jetstream(nc).consumers.get(stream, { filter_subjects: subject });
  return {
    async next(match, what, timeoutMs = 15_000) {
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline) {
        // Short pulls, so the deadline is kept within a couple of seconds.
        const m = await consumer.next({ expires: Math.min(2_000, Math.max(1_000, deadline - Date.now())) });
        if (!m) continue;
        const event = decode(m.data);
        if (match(event)) return event;
      }
      throw new Error(`no ${what} within ${timeoutMs} ms`);
    },
  };
}

/** A tenant's transcript.ready events; `forRoom` waits for the one signaling announces when a room ends. */
export async function readTranscripts(nc: NatsConnection, tenant = 'demo') {
  const reader = await readEvents(nc, streams.transcripts.name, subjects.transcriptReady(tenant), (d) => TranscriptReady.decode(d));
  return { forRoom: (room: string, timeoutMs?: number) => reader.next((e) => e.room === room, `transcript of room ${room}`, timeoutMs) };
}

/** A tenant's attachment.ready events; `forRoom` waits for the first of a room. */
export async function readAttachments(nc: NatsConnection, tenant = 'demo') {
  const reader = await readEvents(nc, streams.transcripts.name, subjects.attachmentReady(tenant), (d) => AttachmentReady.decode(d));
  return { forRoom: (room: string, timeoutMs?: number) => reader.next((e) => e.room === room, `attachment of room ${room}`, timeoutMs) };
}
