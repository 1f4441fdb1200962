import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import type { Browser, BrowserContext, CDPSession, Page } from 'playwright-core';
import type { NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { Objm } from '@nats-io/obj';
import { Residue, catalog, kvKeys } from '@gateway/common';
import { NatsServer, PostgresServer, startCrmSyncProcess, startRecorderProcess, startSfuProcess, startSignalingProcess, waitFor } from '@gateway/testing';
import { launchChromium } from '../support/browser.js';
import { adminApi } from '../support/crmSync.js';
import { photoWithGps } from '../support/images.js';
import { demoToken } from '../support/tokens.js';

const poll = { timeout: 20_000, interval: 50 };
const CUSTOMER_PASSWORD = 'lifecycle-customer-password';
const CARD = '4111 1111 1111 1111';

/**
 * A whole contact, from the end user's first message to the platform forgetting it: a Chromium
 * call with chat (a card number in it), a photo, a device verification and a recording, delivered
 * to the customer's PostgreSQL database connected through the admin API. Afterwards the residue
 * scanner finds nothing, and no stream, KV bucket or object store holds anything of the call
 * (placement, recording record and room session included). What stays is what the platform keeps
 * by design: the end user's registered device key and the tenant's connector.
 */
describe('a contact from call to deletion', () => {
  let nats: NatsServer;
  let nc: NatsConnection;
  let postgres: PostgresServer;
  let sfu: Awaited<ReturnType<typeof startSfuProcess>>;
  let sig: Awaited<ReturnType<typeof startSignalingProcess>>;
  let recorder: Awaited<ReturnType<typeof startRecorderProcess>>;
  let crm: Awaited<ReturnType<typeof startCrmSyncProcess>>;
  let browser: Browser;
  let context: BrowserContext;
  let tmp: string;
  const room = `life-${Date.now()}`;

  beforeAll(async () => {
    [nats, postgres] = await Promise.all([NatsServer.start(), PostgresServer.start()]);
    postgres.createDatabase('customer_crm', 'customer', CUSTOMER_PASSWORD);
    nc = await nats.connect('admin');
    tmp = await mkdtemp(path.join(os.tmpdir(), 'contact-lifecycle-'));
    sfu = await startSfuProcess({ natsUrl: nats.url });
    [sig, recorder, crm] = await Promise.all([
      startSignalingProcess({ natsUrl: nats.url }),
      startRecorderProcess({ natsUrl: nats.url, workDir: tmp, env: { RECORDER_SEGMENT_SECONDS: '2', RECORDER_FINISHED_RECORD_SECONDS: '0' } }),
      startCrmSyncProcess({ natsUrl: nats.url, env: { CRM_SYNC_RETRY_BASE_SECONDS: '0.2', CRM_SYNC_RETRY_MAX_SECONDS: '1' } }),
    ]);
    browser = await launchChromium();
    context = await browser.newContext();
    await context.addInitScript({ content: 'globalThis.__name = (f) => f;' });
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await Promise.all([crm?.stop(), sig?.stop(), recorder?.stop()]);
    await sfu?.stop();
    await nc?.close();
    await postgres?.stop();
    await nats?.stop();
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  /** The customer's database, one query at a time. */
  async function query<T extends pg.QueryResultRow>(text: string, values: unknown[]): Promise<T[]> {
    const db = new pg.Client({ host: '127.0.0.1', port: postgres.port, user: 'customer', password: CUSTOMER_PASSWORD, database: 'customer_crm' });
    await db.connect();
    try {
      return (await db.query<T>(text, values)).rows;
    } finally {
      await db.end();
    }
  }

  /** Every live KV key, object and stream message still in NATS, as `store/key`. */
  async function everythingStored(): Promise<string[]> {
    const jsm = await jetstreamManager(nc);
    const found: string[] = [];
    for (const entry of catalog) {
      if (entry.kind === 'kv') {
        const kv = await new Kvm(nc).open(entry.bucket);
        for await (const key of await kv.keys()) {
          const value = await kv.get(key);
          if (value && value.operation === 'PUT' && value.length > 0) found.push(`${entry.bucket}/${key}`);
        }
      } else if (entry.kind === 'objects') {
        const store = await new Objm(nc).open(entry.bucket);
        for (const info of await store.list()) if (!info.deleted) found.push(`${entry.bucket}/${info.name}`);
      } else {
        const info = await jsm.streams.info(entry.name, { subjects_filter: '>' });
        for (const [subject, count] of Object.entries(info.state.subjects ?? {})) found.push(`${entry.name}/${subject} (${count})`);
      }
    }
    return found.sort();
  }

  it('delivers the call to PostgreSQL and leaves nothing of it on the platform', async () => {
    // The customer connects its database through the admin API.
    const admin = adminApi(crm.url);
    const put = await admin('/v1/connectors/warehouse', {
      method: 'PUT',
      body: JSON.stringify({
        type: 'postgres',
        config: { host: '127.0.0.1', port: postgres.port, database: 'customer_crm', user: 'customer', ssl: 'disable' },
        secrets: { password: CUSTOMER_PASSWORD },
      }),
    });
    expect(put.status).toBe(200);

    // The call: WebAuthn needs a secure context, so the pages are opened at http://localhost.
    const base = `http://localhost:${sig.port}`;
    const endUser: Page = await context.newPage();
    await endUser.goto(`${base}/end-user#token=${await demoToken({ room, identity: 'customer-77', role: 'end_user', phoneNumber: '(415) 555-0177', crmContactId: 'crm-77' })}&autojoin=1`);
    const agent: Page = await context.newPage();
    await agent.goto(`${base}/agent#token=${await demoToken({ room, identity: 'agent-7', role: 'agent', canRecord: true })}&autojoin=1`);
    for (const page of [endUser, agent]) await page.waitForFunction(() => document.body.dataset.state === 'connected', undefined, poll);
    await agent.waitForFunction(() => [...(window as any).room.participants.values()].some((p: any) => p.role === 'end_user'), undefined, poll);
    // Camera and microphone from the end user, the microphone from the agent.
    await endUser.waitForFunction(() => (window as any).room.localTracks.size >= 2, undefined, poll);
    await agent.waitForFunction(() => (window as any).room.localTracks.size >= 1, undefined, poll);

    // Recording, while the rest of the contact happens.
    const recording = await agent.evaluate(() => (window as any).room.startRecording().then((r: any) => r.recordingId as string));
    expect(recording).toMatch(/^RC/);

    // Chat, with a card number the platform must never keep in the clear.
    await endUser.evaluate((text) => (window as any).room.sendMessage(text), `my card is ${CARD}`);
    await agent.evaluate(() => (window as any).room.sendMessage('thanks, one moment'));

    // A photo.
    const file = path.join(tmp, 'IMG_0077.jpg');
    await writeFile(file, await photoWithGps());
    const ask = async (kind: string) => {
      const before = await agent.evaluate(() => ((window as any).room.smartActions as Array<{ actionId: string }>).map((a) => a.actionId));
      await agent.bringToFront();
      await agent.click(`[data-testid="request-${kind}"]`);
      let actionId = '';
      await expect
        .poll(
          async () => (actionId = (await agent.evaluate(() => ((window as any).room.smartActions as Array<{ actionId: string }>).map((a) => a.actionId))).find((id) => !before.includes(id)) ?? ''),
          poll,
        )
        .toMatch(/^SA/);
      await endUser.waitForSelector(`.smart-action[data-action-id="${actionId}"][data-state="requested"]`, poll);
      await endUser.bringToFront();
      return `.smart-action[data-action-id="${actionId}"]`;
    };
    const photo = await ask('photo');
    await endUser.setInputFiles(`${photo} [data-testid="smart-action-file"]`, file);
    await endUser.click(`${photo} [data-testid="smart-action-send"]`);
    await agent.waitForSelector(`${photo}[data-state="completed"] img[data-testid="smart-action-image"]`, poll);

    // A device verification with a key registered in this call.
    const cdp: CDPSession = await context.newCDPSession(endUser);
    await cdp.send('WebAuthn.enable');
    await cdp.send('WebAuthn.addVirtualAuthenticator', { options: { protocol: 'ctap2', transport: 'internal', hasResidentKey: true, hasUserVerification: true, isUserVerified: true } });
    await endUser.bringToFront();
    await endUser.click('[data-testid="register-device"]');
    await expect.poll(() => endUser.getAttribute('[data-testid="register-device-status"]', 'data-credential-id'), poll).toMatch(/^[A-Za-z0-9_-]{16,}$/);
    const verification = await ask('verification');
    await endUser.click(`${verification} [data-testid="smart-action-verify"]`);
    await agent.waitForSelector(`${verification}[data-state="completed"] [data-testid="smart-action-result"][data-verified="true"]`, poll);
    await cdp.detach();

    // While the call lives, the scanner sees its records and calls none of them residue.
    const residueNc = await nats.connect('residue');
    const residue = await Residue.open(residueNc);
    const live = await residue.scan({ graceMs: 0, finishedRecordingMs: 0 });
    expect(live.entries).toBeGreaterThan(10);
    expect(live.summary).toEqual([]);
    // And so does the enumeration below: the live call's placement, room session and recording record.
    const whileLive = await everythingStored();
    expect(whileLive).toEqual(expect.arrayContaining([`gateway_room_placement/${kvKeys.room('demo', room)}`, `gateway_room_sessions/${kvKeys.room('demo', room)}`]));
    expect(whileLive.some((k) => k.startsWith('gateway_recordings/'))).toBe(true);

    // A few seconds of media, then the recording stops and everyone leaves.
    await new Promise((r) => setTimeout(r, 4_000));
    await agent.evaluate(() => (window as any).room.stopRecording());
    await endUser.evaluate(() => (window as any).room.leave());
    await agent.evaluate(() => (window as any).room.leave());

    // Everything arrives in the customer's database: the session with the contact's details, the
    // recording, the transcript (redacted) and the photo.
    const delivered = await waitFor(
      async () => {
        const rows = await query<{ kind: string; delivery_id: string; contacts: Array<Record<string, unknown>> }>('select kind, delivery_id, contacts from gateway_sessions where room = $1', [
          room,
        ]).catch(() => []);
        const kinds = new Set(rows.map((r) => r.kind));
        return ['session', 'recording', 'transcript', 'attachment'].every((k) => kinds.has(k)) ? rows : undefined;
      },
      90_000,
      'the call delivered',
    ).catch(async (error: Error) => {
      // Say which of the four arrived, and what crm-sync and signaling last logged.
      const kinds = (await query<{ kind: string }>('select kind from gateway_sessions where room = $1', [room]).catch(() => [])).map((r) => r.kind);
      throw new Error(`${error.message}: delivered ${JSON.stringify(kinds)}; crm-sync said:\n${crm.logs.slice(-2000)}\nsignaling said:\n${sig.logs.slice(-2000)}`);
    });
    const session = delivered.find((r) => r.kind === 'session')!;
    expect(session.contacts.find((c) => c.role === 'end_user')).toMatchObject({ externalId: 'customer-77', crmContactId: 'crm-77', phoneNumber: '+14155550177' });
    const artifacts = await query<{ kind: string; content_type: string; content: Buffer | null }>(
      'select a.kind, a.content_type, a.content from gateway_artifacts a join gateway_sessions s using (delivery_id) where s.room = $1',
      [room],
    );
    expect(artifacts.map((a) => a.kind)).toEqual(expect.arrayContaining(['voice', 'transcript']));
    const transcriptText = artifacts.find((a) => a.kind === 'transcript' && a.content_type.startsWith('text/plain'))!.content!.toString('utf8');
    expect(transcriptText).toContain('thanks, one moment');
    expect(transcriptText).not.toContain(CARD);

    // Then the platform forgets it: the residue scanner finds nothing, whatever its grace.
    try {
      const report = await waitFor(
        async () => {
          const scanned = await residue.scan({ graceMs: 0, finishedRecordingMs: 0 });
          return scanned.summary.length === 0 ? scanned : undefined;
        },
        30_000,
        'a clean residue scan',
      ).catch(async () => residue.scan({ graceMs: 0, finishedRecordingMs: 0 }));
      expect(report.summary).toEqual([]);
    } finally {
      await residueNc.close();
    }

    // And nothing of the call is anywhere: no placement, recording record or room session, no
    // chat, no event, no artifact, no key. What stays is kept by design, not by the call: the end
    // user's registered device key and the customer's connector (and the CRM contact mapping);
    // and the services' own: the media nodes' registry, signaling's liveness keys, the audit counts.
    const kept = [/^gateway_device_keys\//, /^gateway_connectors\/demo\.warehouse$/, /^gateway_crm_contacts\//, /^gateway_(sfu|recorder)_nodes\//, /^gateway_signaling_replicas\//, /^GATEWAY_AUDIT\//];
    const left = await waitFor(
      async () => {
        const stored = (await everythingStored()).filter((k) => !kept.some((re) => re.test(k)));
        return stored.length === 0 ? stored : undefined;
      },
      30_000,
      'nothing of the call left',
    ).catch(async () => (await everythingStored()).filter((k) => !kept.some((re) => re.test(k))));
    expect(left).toEqual([]);
    expect((await new Kvm(nc).open('gateway_room_placement').then((kv) => kv.get(kvKeys.room('demo', room))))?.operation ?? 'gone').not.toBe('PUT');
    // Every stream but the audit (counts only) is empty: no event still names the contact.
    const jsm = await jetstreamManager(nc);
    for (const entry of catalog) {
      if (entry.kind !== 'stream') continue;
      const info = await jsm.streams.info(entry.name);
      if (entry.name !== 'GATEWAY_AUDIT') expect(info.state.messages, entry.name).toBe(0);
    }
  }, 240_000);
});
