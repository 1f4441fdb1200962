import { DeliverPolicy, type JetStreamClient, type JetStreamManager, type JsMsg } from '@nats-io/jetstream';
import { ErrorCode, GatewayError } from '../errors.js';

/** The sequence of the subject's newest message, or 0 when it has none. */
async function lastSequence(jsm: JetStreamManager, stream: string, subject: string): Promise<number> {
  const last = await jsm.streams.getMessage(stream, { last_by_subj: subject }).catch((error: unknown) => {
    // No message on the subject: 404 from the server, which the client returns as null or throws.
    if (String((error as Error)?.message ?? error).includes('no message found')) return null;
    throw error;
  });
  return last?.seq ?? 0;
}

/**
 * Every message a stream holds on one subject, in order, through an ordered consumer, up to the
 * newest one at the start of the read. A fetch that brings nothing (a stream electing a new
 * leader, or the awaited message erased meanwhile by a redaction or a delivery) is not taken
 * for the end: the subject's newest message is looked up again, and the read goes on while it
 * is still ahead, for up to `timeoutMs`, then fails rather than answer with part of the subject.
 */
export async function* readSubject(js: JetStreamClient, jsm: JetStreamManager, stream: string, subject: string, timeoutMs = 15_000): AsyncGenerator<JsMsg> {
  let target = await lastSequence(jsm, stream, subject);
  if (target === 0) return;
  const consumer = await js.consumers.get(stream, { filter_subjects: subject });
  const deadline = Date.now() + timeoutMs;
  let read = 0;
  for (;;) {
    // (JetStream takes no shorter fetch than 1 s.)
    const batch = await consumer.fetch({ max_messages: 256, expires: 1_000 });
    let received = 0;
    for await (const message of batch) {
      received++;
      read = message.seq;
      yield message;
      if (read >= target) {
        batch.stop();
        return;
      }
    }
    if (received > 0) continue;
    target = Math.min(target, await lastSequence(jsm, stream, subject).catch(() => target));
    if (read >= target) return;
    if (Date.now() > deadline) throw new GatewayError(ErrorCode.UNAVAILABLE, `reading ${subject} did not finish in ${timeoutMs} ms`);
  }
}

/**
 * What a stream holds on the subjects matching `filter`, through an ordered consumer (which the
 * server removes by itself once idle): every message, or only the newest of each subject (a KV
 * bucket's keys, an object store's metadata). `headersOnly` leaves the values on the server
 * (the size is in the `Nats-Msg-Size` header). Ends at the newest message when the read began.
 */
export async function* readStream(js: JetStreamClient, jsm: JetStreamManager, stream: string, filter: string, options: { lastPerSubject: boolean; headersOnly?: boolean }): AsyncGenerator<JsMsg> {
  const info = await jsm.streams.info(stream);
  if (info.state.messages === 0) return;
  const consumer = await js.consumers.get(stream, {
    filter_subjects: filter,
    deliver_policy: options.lastPerSubject ? DeliverPolicy.LastPerSubject : DeliverPolicy.All,
    headers_only: options.headersOnly ?? false,
  });
  for (;;) {
    const batch = await consumer.fetch({ max_messages: 2_000, expires: 1_000 });
    let received = 0;
    for await (const message of batch) {
      received++;
      yield message;
      if (message.info.pending === 0) {
        batch.stop();
        return;
      }
    }
    if (received === 0) return;
  }
}
