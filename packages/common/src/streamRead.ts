import type { JetStreamClient, JsMsg } from '@nats-io/jetstream';

/**
 * Every message a stream holds on one subject, in order, through an ordered consumer. The read
 * ends when nothing is pending, or when a fetch waits `idleMs` without bringing anything: a
 * message counted as pending may be erased before it is read (a redaction, a delivery), and the
 * read must not wait for it forever. (JetStream takes no shorter fetch than 1 s.)
 */
export async function* readSubject(js: JetStreamClient, stream: string, subject: string, idleMs = 1_000): AsyncGenerator<JsMsg> {
  const consumer = await js.consumers.get(stream, { filter_subjects: subject });
  for (;;) {
    let received = 0;
    const batch = await consumer.fetch({ max_messages: 256, expires: idleMs });
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
