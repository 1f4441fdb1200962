import { randomBytes } from 'node:crypto';
import { Webhook } from 'standardwebhooks';
import { describe, expect, it } from 'vitest';
import { WebhookReceiver, WebhookVerificationError } from './webhooks.js';

const secret = () => `whsec_${randomBytes(32).toString('base64')}`;
const event = { id: 'evt_abc', type: 'room.started', createdAtMs: 1, data: { room: { name: 'r1', sessionId: 'SE_1', startedAtMs: 1 } } };

/** Headers as crm-sync sends them: each secret's signature, space separated. */
function signed(secrets: string[], body: string, id = event.id, at = new Date()) {
  return {
    'webhook-id': id,
    'webhook-timestamp': String(Math.floor(at.getTime() / 1000)),
    'webhook-signature': secrets.map((s) => new Webhook(s).sign(id, at, body)).join(' '),
  };
}

async function refusal(promise: Promise<unknown>): Promise<string> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(WebhookVerificationError);
  return (error as WebhookVerificationError).code;
}

describe('WebhookReceiver', () => {
  it('takes a signed event and gives it back parsed', async () => {
    const key = secret();
    const body = JSON.stringify(event);
    expect(await new WebhookReceiver(key).receive(body, signed([key], body))).toEqual(event);
  });

  it('refuses a body signed with another secret, or changed after signing', async () => {
    const key = secret();
    const body = JSON.stringify(event);
    expect(await refusal(new WebhookReceiver(key).receive(body, signed([secret()], body)))).toBe('BAD_SIGNATURE');
    const changed = JSON.stringify({ ...event, data: { room: { name: 'r2', sessionId: 'SE_1', startedAtMs: 1 } } });
    expect(await refusal(new WebhookReceiver(key).receive(changed, signed([key], body)))).toBe('BAD_SIGNATURE');
  });

  it('refuses a replayed request, and takes our retry of the same event (a new timestamp)', async () => {
    const key = secret();
    const body = JSON.stringify(event);
    const receiver = new WebhookReceiver(key);
    const first = signed([key], body, event.id, new Date(Date.now() - 2_000));
    await receiver.receive(body, first);
    expect(await refusal(receiver.receive(body, first))).toBe('REPLAYED');
    expect((await receiver.receive(body, signed([key], body))).id).toBe(event.id);
  });

  it('refuses an old or future timestamp, however well signed', async () => {
    const key = secret();
    const body = JSON.stringify(event);
    expect(await refusal(new WebhookReceiver(key).receive(body, signed([key], body, event.id, new Date(Date.now() - 10 * 60_000))))).toBe('TIMESTAMP_OUT_OF_RANGE');
    expect(await refusal(new WebhookReceiver(key).receive(body, signed([key], body, event.id, new Date(Date.now() + 10 * 60_000))))).toBe('TIMESTAMP_OUT_OF_RANGE');
  });

  it('during a rotation, takes either signature; after it, only the new secret', async () => {
    const [old, fresh] = [secret(), secret()];
    const body = JSON.stringify(event);
    const both = signed([fresh, old], body);
    expect((await new WebhookReceiver(old).receive(body, both)).id).toBe(event.id);
    expect((await new WebhookReceiver(fresh).receive(body, both)).id).toBe(event.id);
    expect(await refusal(new WebhookReceiver(old).receive(body, signed([fresh], body)))).toBe('BAD_SIGNATURE');
  });

  it('refuses missing headers, and a signed body that is not an event or names another id', async () => {
    const key = secret();
    const body = JSON.stringify(event);
    expect(await refusal(new WebhookReceiver(key).receive(body, { 'webhook-id': event.id }))).toBe('MISSING_HEADERS');
    const other = JSON.stringify({ hello: 'world' });
    expect(await refusal(new WebhookReceiver(key).receive(other, signed([key], other)))).toBe('MALFORMED');
    expect(await refusal(new WebhookReceiver(key).receive(body, signed([key], body, 'evt_other')))).toBe('MALFORMED');
  });

  it('reads headers from a fetch Headers object (web frameworks, Node http alike)', async () => {
    const key = secret();
    const body = JSON.stringify(event);
    expect((await new WebhookReceiver(key).receive(new TextEncoder().encode(body), new Headers(signed([key], body)))).type).toBe('room.started');
  });
});
