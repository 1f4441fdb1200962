import { Kvm } from '@nats-io/kv';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NatsServer, startRoutingProcess, startSignalingProcess, waitFor } from '@gateway/testing';
import { buckets } from '@gateway/common';
import { mintDeskToken, type DeskRole } from '../../services/signaling/src/auth/tokens.js';
import { DEMO_TENANT } from '../../services/signaling/src/config.js';
import { OtlpCollector, SpanKinds, type CollectedSpan } from '../support/otlpCollector.js';
import { billingDirectory, seedRoutingDirectory } from '../support/routingDirectory.js';
import { twoTenantEnv } from '../support/tokens.js';
import { TestClient } from '../support/wsClient.js';

/**
 * One trace per contact, from the end user's request to the accept (docs/observability.md):
 * signaling begins it, routing keeps it with the contact's record, and every offer, the accept
 * and both join tokens belong to it, even when the replica that made the first offer dies and
 * another takes the tenant over.
 */
describe('the trace of a contact', () => {
  let nats: NatsServer;
  let collector: OtlpCollector;
  let signaling: Awaited<ReturnType<typeof startSignalingProcess>>;
  const routing: Array<Awaited<ReturnType<typeof startRoutingProcess>>> = [];
  const clients: TestClient[] = [];

  const desk = async (identity: string, role: DeskRole, extra: { name?: string; phoneNumber?: string } = {}) => {
    const client = await TestClient.open(`${signaling.url.replace('http', 'ws')}/v1/desk`);
    clients.push(client);
    const { token } = await mintDeskToken(DEMO_TENANT, { identity, role, ...extra });
    expect((await client.request('hello', { token, protocolVersion: 1 })).error).toBeUndefined();
    return client;
  };
  const offered = (client: TestClient, contactId: string) => client.notifications.some((n) => n.offered?.contactId === contactId);
  const find = (what: string, check: (s: CollectedSpan) => boolean) => waitFor(() => collector.spans.find(check), 15_000, what);

  beforeAll(async () => {
    [nats, collector] = await Promise.all([NatsServer.start(), OtlpCollector.start()]);
    await seedRoutingDirectory(nats, billingDirectory);
    // Offers wait long enough to outlive the takeover of the tenant (the lease's age limit).
    const env = { ...twoTenantEnv, ROUTING_TICK_MS: '100', ROUTING_OFFER_TIMEOUT_SECONDS: '40', ROUTING_LEASE_POLL_MS: '300' };
    routing.push(await startRoutingProcess({ natsUrl: nats.url, replicaId: 'routing-a', env: collector.env({ ...env, OTEL_RESOURCE_ATTRIBUTES: 'service.instance.id=routing-a' }) }));
    routing.push(await startRoutingProcess({ natsUrl: nats.url, replicaId: 'routing-b', env: collector.env({ ...env, OTEL_RESOURCE_ATTRIBUTES: 'service.instance.id=routing-b' }) }));
    signaling = await startSignalingProcess({ natsUrl: nats.url, env: collector.env(twoTenantEnv) });
  }, 90_000);

  afterAll(async () => {
    for (const client of clients) client.ws.terminate();
    await signaling?.stop();
    for (const replica of routing) await replica.stop();
    await nats?.stop();
    await collector?.close();
  });

  it('holds the request, each offer with its outcome, the accept and both join tokens, across a change of owner', async () => {
    const ann = await desk('ann', 'agent');
    await ann.request('setStatus', { status: 'available' });
    const bob = await desk('bob', 'agent');
    await bob.request('setStatus', { status: 'available' });
    const user = await desk('eve', 'end_user', { name: 'Eve Enduser', phoneNumber: '+14155552671' });
    const contactId = (await user.request('requestSupport', { queue: 'billing', channel: 'video', context: { order: 'A-17' } })).contact.contactId as string;

    // Signaling begins the trace; routing's handling of the request is its child.
    const request = await find('the desk request', (s) => s.name === 'gateway.routing.v1.Desk/requestSupport' && s.attributes['gateway.contact_id'] === contactId);
    expect(request).toMatchObject({ service: 'signaling', kind: SpanKinds.server, parentSpanId: '', statusCode: 0 });
    expect(request.attributes).toMatchObject({ 'gateway.tenant': 'demo', 'gateway.queue_id': 'billing', 'gateway.channel': 'video' });
    const inTrace = (check: (s: CollectedSpan) => boolean) => (s: CollectedSpan) => s.traceId === request.traceId && check(s);
    const routed = await find(
      "routing's handling of the request",
      inTrace((s) => s.name === 'gateway.routing.v1.Routing/requestSupport'),
    );
    expect(routed).toMatchObject({ service: 'routing', kind: SpanKinds.server, parentSpanId: request.spanId });
    expect(routed.attributes).toMatchObject({ 'gateway.tenant': 'demo', 'gateway.queue_id': 'billing', 'gateway.channel': 'video', 'gateway.contact_id': contactId });
    const owner = routed.instance!;

    // Ann is offered it first and declines: an offer span with its outcome, by the owner.
    await waitFor(() => offered(ann, contactId), 10_000, 'the offer to ann');
    await ann.request('decline', { contactId });
    await waitFor(() => offered(bob, contactId), 10_000, 'the offer to bob');
    const declined = await find(
      'the declined offer',
      inTrace((s) => s.name === 'routing offer' && s.attributes['gateway.offer.outcome'] === 'declined'),
    );
    expect(declined).toMatchObject({ instance: owner, parentSpanId: routed.spanId });

    // The owner dies with bob's offer out; the other replica takes the tenant over and records
    // in the same trace, which it read from the contact's record.
    await routing.find((r) => r.replicaId === owner)!.stop('SIGKILL');
    const survivor = routing.find((r) => r.replicaId !== owner)!;
    await waitFor(async () => (await leaseHolder()) === survivor.replicaId, 20_000, 'the other replica owning the tenant');
    let accepted: Record<string, any> | undefined;
    await waitFor(
      async () => {
        const answer = await bob.request('accept', { contactId });
        if (answer.join) accepted = answer;
        return accepted;
      },
      15_000,
      'bob accepting after the takeover',
    );
    await user.waitForNotification('connected', 10_000);

    const accept = await find(
      'the accept',
      inTrace((s) => s.name === 'gateway.routing.v1.Routing/accept'),
    );
    expect(accept).toMatchObject({ service: 'routing', instance: survivor.replicaId, kind: SpanKinds.server, parentSpanId: routed.spanId, statusCode: 0 });
    expect(accept.attributes).toMatchObject({ 'gateway.contact_id': contactId, 'gateway.queue_id': 'billing', 'gateway.channel': 'video' });
    const acceptedOffer = await find(
      'the accepted offer',
      inTrace((s) => s.name === 'routing offer' && s.attributes['gateway.offer.outcome'] === 'accepted'),
    );
    expect(acceptedOffer).toMatchObject({ instance: survivor.replicaId, parentSpanId: routed.spanId });

    // Both join tokens are minted by signaling under the accept.
    const agentToken = await find(
      "the agent's join token",
      inTrace((s) => s.name === 'desk join token' && s.attributes['gateway.desk_role'] === 'agent'),
    );
    expect(agentToken).toMatchObject({ service: 'signaling', parentSpanId: accept.spanId });
    const userToken = await find(
      "the end user's join token",
      inTrace((s) => s.name === 'desk join token' && s.attributes['gateway.desk_role'] === 'end_user'),
    );
    expect(userToken).toMatchObject({ service: 'signaling', parentSpanId: accept.spanId });
    expect(userToken.attributes).toMatchObject({ 'gateway.contact_id': contactId, 'gateway.tenant': 'demo' });

    // Ids only: no name, context or phone number anywhere in the trace.
    const trace = JSON.stringify(collector.trace(request.traceId));
    for (const secret of ['Eve', 'Enduser', ...billingDirectory.people.map((p) => p.name), 'A-17', '4155552671']) expect(trace).not.toContain(secret);
  }, 90_000);

  /** The replica holding the demo tenant's lease. */
  async function leaseHolder(): Promise<string | undefined> {
    const nc = await nats.connect();
    try {
      const entry = await (await new Kvm(nc).open(buckets.routingLeases)).get('demo');
      return entry?.operation === 'PUT' ? (entry.json() as { replicaId: string }).replicaId : undefined;
    } finally {
      await nc.close();
    }
  }
});
