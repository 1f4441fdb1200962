import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { catalog, streamNameOf } from '@gateway/common';
import { NatsServer, startCrmSyncProcess, startRecorderProcess, startRoutingProcess, startSfuProcess, startSignalingProcess, waitFor } from '@gateway/testing';
import { scrapeMetrics, sumOf, type Scrape } from '../support/metrics.js';
import { TestClients } from '../support/wsClient.js';
import { demoToken } from '../support/tokens.js';
import { opusRtpParameters } from '../support/rtpParameters.js';

const dashboardPath = fileURLToPath(new URL('../../deploy/grafana-dashboard.json', import.meta.url));
const alertsPath = fileURLToPath(new URL('../../k8s/base/alerts.yaml', import.meta.url));

/** What operators are promised, by service (docs/observability.md). */
const required: Record<string, string[]> = {
  sfu: [
    'gateway_sfu_rooms',
    'gateway_sfu_participants',
    'gateway_sfu_transports',
    'gateway_sfu_producers',
    'gateway_sfu_consumers',
    'gateway_sfu_workers',
    'gateway_sfu_rtp_packets_total',
    'gateway_sfu_rtp_bytes_total',
    'gateway_sfu_rtp_lost_packets_total',
    'gateway_sfu_rtcp_nacks_total',
    'gateway_sfu_rtcp_plis_total',
    'gateway_sfu_rtt_seconds',
    'gateway_sfu_announced_address_info',
  ],
  signaling: ['gateway_signaling_connections', 'gateway_signaling_sessions', 'gateway_signaling_join_duration_seconds', 'gateway_signaling_requests_total'],
  recorder: ['gateway_recorder_jobs_active', 'gateway_recorder_jobs_ended_total'],
  'crm-sync': [
    'gateway_crm_sync_deliveries_total',
    'gateway_jetstream_consumer_pending_messages',
    'gateway_jetstream_consumer_ack_pending_messages',
    'gateway_jetstream_stream_bytes',
    'gateway_jetstream_stream_max_bytes',
  ],
  routing: [
    'gateway_routing_contacts_waiting',
    'gateway_routing_longest_wait_seconds',
    'gateway_routing_service_level_ratio',
    'gateway_routing_abandon_ratio',
    'gateway_routing_agents',
    'gateway_routing_tenants_owned',
    'gateway_routing_offers_total',
    'gateway_routing_wait_to_offer_seconds',
    'gateway_routing_command_seconds',
  ],
};

/**
 * The subsystems each service's own metrics may use; prom-client's process and Node.js metrics and
 * the reloads of watched configuration files (`config`) are everyone's, the keyring's (`kms`) those of every service that wraps data keys, and the residue
 * scanner's those of crm-sync, which runs it.
 */
const subsystems: Record<string, string[]> = {
  sfu: ['sfu'],
  signaling: ['signaling', 'kms'],
  recorder: ['recorder', 'kms'],
  'crm-sync': ['crm_sync', 'jetstream', 'kms', 'webhook', 'residue'],
  routing: ['routing', 'kms'],
};
const shared = ['process', 'nodejs', 'config'];
const UNITS = ['seconds', 'bytes', 'packets', 'messages', 'ratio'];

/** Why a metric name breaks `gateway_<subsystem>_<name>_<unit>`, or undefined when it does not. */
function namingProblem(service: string, name: string, type: string): string | undefined {
  const match = /^gateway_([a-z]+(?:_sync)?)_([a-z][a-z0-9]*(?:_[a-z0-9]+)*)$/.exec(name);
  if (!match) return 'not gateway_<subsystem>_<name> in lower snake case';
  const [, subsystem, rest] = match as unknown as [string, string, string];
  if (shared.includes(subsystem)) return undefined; // prom-client's standard names
  if (!subsystems[service]!.includes(subsystem)) return `subsystem "${subsystem}" is not ${service}'s`;
  const last = rest.split('_').at(-1)!;
  if (type === 'counter' && last !== 'total') return 'a counter ends in _total';
  if (type !== 'counter' && last === 'total') return 'only counters end in _total';
  if ((type === 'histogram' || type === 'summary') && !UNITS.includes(last)) return `a ${type} ends in its unit (${UNITS.join(', ')})`;
  // A counter's unit goes before _total, a gauge may end in a noun (gateway_sfu_rooms): no rule to check.
  if (type === 'counter' && rest.split('_').some((word, i, words) => UNITS.includes(word) && i < words.length - 2)) return 'the unit is the last word before _total';
  return undefined;
}

/**
 * Every service's /metrics, scraped from real processes after a join with a published track:
 * the promised metrics are there, every name follows `gateway_<subsystem>_<name>_<unit>`, and
 * the Grafana dashboard in deploy/ and the alerts in k8s/base/alerts.yaml ask only for metrics
 * that exist.
 */
describe('metrics of every service', () => {
  let nats: NatsServer;
  let procs: Record<string, { opsPort: number; stop: () => Promise<number | null> }>;
  const scrapes: Record<string, Scrape> = {};
  const workDir = mkdtempSync(path.join(tmpdir(), 'gateway-metrics-'));
  const clients = new TestClients();

  beforeAll(async () => {
    nats = await NatsServer.start();
    const sfu = await startSfuProcess({ natsUrl: nats.url });
    const [signaling, recorder, crm, routing] = await Promise.all([
      startSignalingProcess({ natsUrl: nats.url }),
      startRecorderProcess({ natsUrl: nats.url, workDir }),
      // With the residue identity, as deployed: it exports what the residue alerts ask for.
      startCrmSyncProcess({ natsUrl: nats.url, env: { CRM_SYNC_RESIDUE_NKEY_SEED_FILE: nats.envFor('residue').NATS_NKEY_SEED_FILE! } }),
      startRoutingProcess({ natsUrl: nats.url }),
    ]);
    procs = { sfu, signaling, recorder, 'crm-sync': crm, routing };
    // The one routing replica takes the demo tenant's lease.
    await waitFor(async () => sumOf(await scrapeMetrics(routing.opsPort), 'gateway_routing_tenants_owned') === 1, 15_000, 'routing to take the demo tenant');
    const { client } = await clients.join(signaling.wsUrl, await demoToken({ room: `metrics-${Date.now()}`, identity: 'metrics-user', role: 'end_user' }));
    const send = (await client.request('createTransport', { direction: 'send' })).createTransport;
    await client.request('produce', { transportId: send.transportId, kind: 'audio', rtpParameters: opusRtpParameters(3333), source: 'microphone' });
    for (const [service, proc] of Object.entries(procs)) scrapes[service] = await scrapeMetrics(proc.opsPort);
  }, 90_000);

  afterAll(async () => {
    clients.closeAll();
    await Promise.all(Object.values(procs ?? {}).map((p) => p.stop()));
    await nats?.stop();
    rmSync(workDir, { recursive: true, force: true });
  });

  it('exposes what operators are promised, with live figures', () => {
    for (const [service, names] of Object.entries(required)) {
      for (const name of names) expect(scrapes[service]!.types.has(name), `${service} exposes ${name}`).toBe(true);
    }
    expect(sumOf(scrapes.sfu!, 'gateway_sfu_rooms')).toBe(1);
    expect(sumOf(scrapes.sfu!, 'gateway_sfu_participants')).toBe(1);
    expect(sumOf(scrapes.sfu!, 'gateway_sfu_producers')).toBe(1);
    expect(sumOf(scrapes.signaling!, 'gateway_signaling_connections')).toBe(1);
    expect(sumOf(scrapes.signaling!, 'gateway_signaling_join_duration_seconds_count')).toBe(1);
    expect(scrapes.recorder!.types.get('gateway_recorder_jobs_active')).toBe('gauge');
    expect(sumOf(scrapes.routing!, 'gateway_routing_tenants_owned')).toBe(1);
    // crm-sync reads its durable consumers' backlog from JetStream at each scrape.
    const lag = scrapes['crm-sync']!.samples.filter((s) => s.name === 'gateway_jetstream_consumer_pending_messages');
    expect(lag.map((s) => s.labels.consumer).sort()).toEqual(['crm-sync-recordings', 'crm-sync-sessions', 'crm-sync-transcripts', 'crm-sync-webhooks']);
    expect(lag.every((s) => s.value === 0)).toBe(true);
    // And how full every stream, bucket and object store is, against a limit each has.
    const limits = scrapes['crm-sync']!.samples.filter((s) => s.name === 'gateway_jetstream_stream_max_bytes');
    expect(limits.map((s) => s.labels.stream).sort()).toEqual(catalog.map(streamNameOf).sort());
    expect(limits.every((s) => s.value > 0)).toBe(true);
    const used = scrapes['crm-sync']!.samples.filter((s) => s.name === 'gateway_jetstream_stream_bytes');
    expect(used.map((s) => s.labels.stream).sort()).toEqual(catalog.map(streamNameOf).sort());
  });

  it('names every metric gateway_<subsystem>_<name>_<unit>', () => {
    const problems: string[] = [];
    for (const [service, scrape] of Object.entries(scrapes)) {
      for (const [name, type] of scrape.types) {
        const problem = namingProblem(service, name, type);
        if (problem) problems.push(`${service} ${name} (${type}): ${problem}`);
      }
    }
    expect(problems).toEqual([]);
    // The rule itself catches what it should.
    expect(namingProblem('sfu', 'gateway_sfu_packets', 'counter')).toMatch(/_total/);
    expect(namingProblem('sfu', 'gateway_sfu_join_latency', 'histogram')).toMatch(/unit/);
    expect(namingProblem('sfu', 'gateway_signaling_rooms', 'gauge')).toMatch(/subsystem/);
    expect(namingProblem('sfu', 'sfu_rooms', 'gauge')).toMatch(/gateway_/);
    expect(namingProblem('sfu', 'gateway_sfu_bytes_rtp_total', 'counter')).toMatch(/unit/);
  });

  it('has a Grafana dashboard that asks only for metrics the services expose', () => {
    const dashboard = JSON.parse(readFileSync(dashboardPath, 'utf8'));
    expect(dashboard.schemaVersion).toBeGreaterThanOrEqual(39);
    expect(dashboard.templating.list).toContainEqual(expect.objectContaining({ name: 'datasource', type: 'datasource', query: 'prometheus' }));
    const exposed = new Set<string>();
    for (const scrape of Object.values(scrapes)) {
      for (const [name, type] of scrape.types) {
        exposed.add(name);
        if (type === 'histogram') for (const suffix of ['_bucket', '_sum', '_count']) exposed.add(name + suffix);
      }
    }
    const panels = (dashboard.panels as Array<Record<string, any>>).filter((p) => p.type !== 'row');
    const used = new Set<string>();
    for (const panel of panels) {
      expect(panel.datasource, panel.title).toEqual({ type: 'prometheus', uid: '${datasource}' });
      expect(panel.targets.length, panel.title).toBeGreaterThan(0);
      for (const target of panel.targets) {
        expect(target.datasource, panel.title).toEqual({ type: 'prometheus', uid: '${datasource}' });
        const names = (target.expr as string).match(/\bgateway_[a-z0-9_]+/g) ?? [];
        expect(names.length, `${panel.title}: ${target.expr}`).toBeGreaterThan(0);
        for (const name of names) {
          expect(exposed.has(name), `${panel.title} asks for ${name}, which no service exposes`).toBe(true);
          used.add(name.replace(/_(bucket|sum|count)$/, ''));
        }
      }
    }
    // And it shows everything the operators are promised but the plumbing figures.
    const unshown = Object.values(required)
      .flat()
      .filter((name) => !used.has(name));
    expect(unshown).toEqual(['gateway_sfu_transports']);
  });

  it('has alerts that ask only for metrics the services expose', () => {
    const exposed = new Set<string>();
    for (const scrape of Object.values(scrapes)) {
      for (const [name, type] of scrape.types) {
        exposed.add(name);
        if (type === 'histogram') for (const suffix of ['_bucket', '_sum', '_count']) exposed.add(name + suffix);
      }
    }
    const rules = parseAllDocuments(readFileSync(alertsPath, 'utf8'))
      .map((doc) => doc.toJS() as { kind: string; spec: { groups: Array<{ rules: Array<{ alert: string; expr: string }> }> } })
      .filter((doc) => doc?.kind === 'PrometheusRule')
      .flatMap((doc) => doc.spec.groups.flatMap((group) => group.rules));
    expect(rules.map((rule) => rule.alert)).toEqual(expect.arrayContaining(['GatewayRoutingNoOwner', 'GatewayRoutingServiceLevelLow', 'GatewayRoutingLongWait']));
    for (const rule of rules) {
      for (const name of rule.expr.match(/\bgateway_[a-z0-9_]+/g) ?? []) expect(exposed.has(name), `${rule.alert} asks for ${name}, which no service exposes`).toBe(true);
    }
  });
});
