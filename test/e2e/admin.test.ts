import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Browser, BrowserContext, Locator, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_TENANT } from '@gateway/common';
import { NatsServer, startCrmSyncProcess, startRoutingProcess, startSignalingProcess, waitFor } from '@gateway/testing';
import { launchChromium } from '../support/browser.js';
import { basicAuth } from '../support/crmSync.js';
import { twoTenantEnv } from '../support/tokens.js';

/** Where the screenshots go, to be looked at (not compared): .tmp/screenshots/admin-*.png. */
const SHOTS = resolve('.tmp/screenshots');

type Credentials = { apiKey: string; apiSecret: string };

/**
 * The admin page (/admin, served by signaling) in Chromium, against real processes: nats-server,
 * routing (the directory API) and crm-sync (the API keys), each letting signaling's origin in
 * through ADMIN_ALLOWED_ORIGINS. The page signs in with the demo tenant's key, creates a queue
 * (after showing the API's refusal of a bad one) and a person, edits a profile and a person,
 * adds a team, deletes a person, and makes, rotates and revokes an API key; what it did is
 * checked through the APIs themselves. The cases run in order.
 */
describe('the admin page in Chromium', () => {
  let nats: NatsServer;
  let signaling: Awaited<ReturnType<typeof startSignalingProcess>>;
  let routing: Awaited<ReturnType<typeof startRoutingProcess>>;
  let crm: Awaited<ReturnType<typeof startCrmSyncProcess>>;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;

  /** An admin API call as a backend makes it. */
  const call = (base: string, path: string, as: Credentials = DEMO_TENANT, init: RequestInit = {}) =>
    fetch(`${base}${path}`, { ...init, headers: { authorization: basicAuth(as), 'content-type': 'application/json', ...init.headers } });

  const read = (locator: Locator) => locator.textContent({ timeout: 1_000 }).catch(() => null);

  /** Waits until a test id's text matches. */
  async function text(testId: string, pattern: RegExp, timeoutMs = 10_000): Promise<string> {
    let last = '';
    return waitFor(
      async () => {
        last = (await read(page.getByTestId(testId))) ?? '';
        return pattern.test(last) ? last : undefined;
      },
      timeoutMs,
      `${testId} to read ${pattern}`,
    ).catch((error: Error) => {
      throw new Error(`${error.message} (it reads "${last}")`);
    });
  }

  /** A record's row in a list, by its id. */
  const row = (list: string, id: string) => page.getByTestId(`list-${list}`).locator(`tr[data-id="${id}"]`);

  beforeAll(async () => {
    mkdirSync(SHOTS, { recursive: true });
    nats = await NatsServer.start();
    signaling = await startSignalingProcess({ natsUrl: nats.url, env: twoTenantEnv });
    const admin = { ...twoTenantEnv, ADMIN_ALLOWED_ORIGINS: signaling.url };
    routing = await startRoutingProcess({ natsUrl: nats.url, env: admin });
    crm = await startCrmSyncProcess({ natsUrl: nats.url, env: admin });
    // What the tenant had already: a queue and the profile that serves it.
    const billing = { name: 'Billing', requiredSkills: { billing: 1 } };
    expect((await call(routing.url, '/v1/directory/queues/billing', DEMO_TENANT, { method: 'PUT', body: JSON.stringify(billing) })).status).toBe(201);
    const general = { name: 'General', queues: [{ queueId: 'billing', priority: 1 }], capacity: { call: 1, chat: 2 } };
    expect((await call(routing.url, '/v1/directory/profiles/general', DEMO_TENANT, { method: 'PUT', body: JSON.stringify(general) })).status).toBe(201);
    browser = await launchChromium();
    context = await browser.newContext();
    // Functions handed to page.evaluate are compiled with their names kept (__name).
    await context.addInitScript({ content: 'globalThis.__name = (f) => f;' });
    page = await context.newPage();
    // Deletions and revocations ask first; the test says yes.
    page.on('dialog', (dialog) => void dialog.accept());
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await crm?.stop();
    await routing?.stop();
    await signaling?.stop();
    await nats?.stop();
  });

  it('signs in with the tenant’s key: a wrong secret is refused on the page, and the secret stays out of the URL', async () => {
    await page.goto(`${signaling.url}/admin#directoryApi=${routing.url}&keysApi=${crm.url}`);
    await page.getByTestId('api-key').fill(DEMO_TENANT.apiKey);
    await page.getByTestId('api-secret').fill('not-the-secret-of-the-demo-tenant');
    await page.getByTestId('sign-in').click();
    await text('sign-in-error', /^UNAUTHENTICATED: the (directory|API keys) API .*authenticate with HTTP Basic/);

    await page.getByTestId('api-secret').fill(DEMO_TENANT.apiSecret);
    await page.getByTestId('sign-in').click();
    await text('signed-in-as', /Signed in with demo/);
    await text('list-profiles', /General/);
    expect(page.url()).not.toContain(DEMO_TENANT.apiSecret);
    // Kept in this tab only, and the form's field is emptied.
    expect(await page.evaluate(() => sessionStorage.getItem('gateway.admin.session'))).toContain(DEMO_TENANT.apiSecret);
    expect(await page.evaluate(() => localStorage.length)).toBe(0);
    expect(await page.getByTestId('api-secret').inputValue()).toBe('');
  });

  it('creates a queue, showing the API’s refusal of a bad value on the form first, and lists it', async () => {
    await page.getByTestId('tab-queues').click();
    await text('list-queues', /Billing/);
    await page.getByTestId('add-queues').click();
    await page.getByTestId('field-queueId').fill('returns');
    await page.getByTestId('field-name').fill('Returns');
    await page.getByTestId('field-priority').fill('2');
    await page.getByTestId('field-requiredSkills').fill('returns:2');
    await page.getByTestId('field-serviceLevelSeconds').fill('45');
    await page.getByTestId('field-offerTimeoutSeconds').fill('2');
    await page.getByTestId('field-maxWaitSeconds').fill('900');
    await page.getByTestId('field-overflowQueueId').selectOption('billing');
    await page.getByTestId('field-overflowAfterSeconds').fill('300');
    await page.getByTestId('field-contextFields').fill('orderId, product');
    await page.getByTestId('field-timeZone').fill('Europe/Berlin');
    await page.getByTestId('field-weekly').fill('Mon-Fri 09:00-17:00\nSat 10:00-14:00');
    await page.getByTestId('field-closedDates').fill('2026-12-25');
    await page.getByTestId('save-queues').click();
    // The API's own code and words; the field it names is marked.
    await text('queues-error', /^BAD_REQUEST: the body is invalid: offerTimeoutSeconds: /);
    expect(await page.getByTestId('field-offerTimeoutSeconds').getAttribute('aria-invalid')).toBe('true');
    expect(await call(routing.url, '/v1/directory/queues/returns').then((r) => r.status)).toBe(404);
    await page.screenshot({ path: join(SHOTS, 'admin-queue-refused.png'), fullPage: true });

    await page.getByTestId('field-offerTimeoutSeconds').fill('20');
    await page.getByTestId('save-queues').click();
    await row('queues', 'returns').waitFor({ timeout: 10_000 });
    expect(await read(row('queues', 'returns').locator('[data-field="overflow"]'))).toBe('Billing after 300 s');
    expect(await read(row('queues', 'returns').locator('[data-field="hours"]'))).toContain('Europe/Berlin: Mon 09:00-17:00');
    const stored = await call(routing.url, '/v1/directory/queues/returns');
    expect(stored.status).toBe(200);
    expect(await stored.json()).toEqual({
      queueId: 'returns',
      name: 'Returns',
      priority: 2,
      requiredSkills: { returns: 2 },
      serviceLevelSeconds: 45,
      offerTimeoutSeconds: 20,
      maxWaitSeconds: 900,
      overflow: { queueId: 'billing', afterSeconds: 300 },
      contextFields: ['orderId', 'product'],
      businessHours: {
        timeZone: 'Europe/Berlin',
        weekly: [1, 2, 3, 4, 5].map((day) => ({ day, open: '09:00', close: '17:00' })).concat([{ day: 6, open: '10:00', close: '14:00' }]),
        closedDates: ['2026-12-25'],
      },
    });

    // A queue something refers to is not deleted: the API's 409 is shown, naming what refers to it.
    await page.getByTestId('delete-queues-billing').click();
    await text('error', /^INVALID_STATE: .*general/);
    expect((await call(routing.url, '/v1/directory/queues/billing')).status).toBe(200);
    await page.locator('#error .close').click();
  });

  it('creates a person with skills and a routing profile, and lists them', async () => {
    await page.getByTestId('tab-people').click();
    await page.getByTestId('add-people').click();
    await page.getByTestId('field-personId').fill('dana');
    await page.getByTestId('field-name').fill('Dana Agent');
    await page.getByTestId('field-skills').fill('billing:4, returns:7');
    await page.getByTestId('field-profileId').selectOption('general');
    await page.getByTestId('save-people').click();
    await row('people', 'dana').waitFor({ timeout: 10_000 });
    expect(await read(row('people', 'dana').locator('[data-field="name"]'))).toBe('Dana Agent');
    expect(await read(row('people', 'dana').locator('[data-field="profile"]'))).toBe('General');
    const stored = await call(routing.url, '/v1/directory/people/dana');
    expect(await stored.json()).toEqual({ personId: 'dana', name: 'Dana Agent', roles: ['agent'], skills: { billing: 4, returns: 7 }, profileId: 'general' });
    await page.screenshot({ path: join(SHOTS, 'admin-people.png'), fullPage: true });
  });

  it('edits a routing profile and a person, adds a team, and deletes a record', async () => {
    await page.getByTestId('tab-profiles').click();
    await page.getByTestId('edit-profiles-general').click();
    expect(await page.getByTestId('field-profileId').getAttribute('readonly')).not.toBeNull();
    await page.getByTestId('field-serves-returns').check();
    await page.getByTestId('field-priority.returns').fill('2');
    await page.getByTestId('field-delay.returns').fill('30');
    await page.getByTestId('field-chat').fill('3');
    await page.getByTestId('save-profiles').click();
    await text('list-profiles', /Returns \(2, after 30 s\)/);
    expect(await (await call(routing.url, '/v1/directory/profiles/general')).json()).toEqual({
      profileId: 'general',
      name: 'General',
      queues: [
        { queueId: 'billing', priority: 1 },
        { queueId: 'returns', priority: 2, delaySeconds: 30 },
      ],
      capacity: { call: 1, chat: 3 },
    });

    await page.getByTestId('tab-teams').click();
    await page.getByTestId('add-teams').click();
    await page.getByTestId('field-teamId').fill('east');
    await page.getByTestId('field-name').fill('East');
    await page.getByTestId('save-teams').click();
    await row('teams', 'east').waitFor({ timeout: 10_000 });

    await page.getByTestId('tab-people').click();
    await page.getByTestId('edit-people-dana').click();
    await page.getByTestId('field-teamId').selectOption('east');
    await page.getByTestId('save-people').click();
    await text('list-people', /East/);
    expect(await (await call(routing.url, '/v1/directory/people/dana')).json()).toMatchObject({ teamId: 'east' });

    // A person made through the API shows after a reload (the tab's session signs the page in
    // again, without the form), and goes when deleted.
    const sam = { name: 'Sam', roles: ['supervisor'] };
    expect((await call(routing.url, '/v1/directory/people/sam', DEMO_TENANT, { method: 'PUT', body: JSON.stringify(sam) })).status).toBe(201);
    await page.getByTestId('tab-teams').click();
    await page.getByTestId('edit-teams-east').click();
    await page.getByTestId('cancel-teams').click();
    await page.getByTestId('tab-people').click();
    await page.reload();
    await row('people', 'sam').waitFor({ timeout: 10_000 });
    await page.getByTestId('delete-people-sam').click();
    await waitFor(async () => (await row('people', 'sam').count()) === 0, 10_000, 'sam to leave the list');
    expect((await call(routing.url, '/v1/directory/people/sam')).status).toBe(404);
  });

  it('makes an API key and rotates it: each secret is shown once, and the old and new both work during the overlap', async () => {
    await page.getByTestId('tab-api-keys').click();
    await page.getByTestId('key-label').fill('billing backend');
    await page.getByTestId('create-key').click();
    const first = await text('new-secret-value', /^sk_/);
    const keyId = (await read(page.locator('#new-secret [data-field="keyId"]')))!;
    expect(keyId).toMatch(/^ak_/);
    await row('api-keys', keyId).waitFor({ timeout: 10_000 });
    const made = { apiKey: keyId, apiSecret: first };
    expect((await call(crm.url, '/v1/api-keys', made)).status).toBe(200);
    // The directory takes the tenant's made keys too.
    expect((await call(routing.url, '/v1/directory', made)).status).toBe(200);
    await page.getByTestId('new-secret-done').click();
    expect(await page.getByTestId('new-secret').isHidden()).toBe(true);
    expect(await page.content()).not.toContain(first);

    await page.getByTestId('overlap-seconds').fill('600');
    await page.getByTestId(`rotate-${keyId}`).click();
    const second = await text('new-secret-value', /^sk_/);
    expect(second).not.toBe(first);
    await text('new-secret', /old secret is still taken until/);
    await page.screenshot({ path: join(SHOTS, 'admin-api-keys.png'), fullPage: true });
    const rotated = { apiKey: keyId, apiSecret: second };
    expect((await call(crm.url, '/v1/api-keys', made)).status).toBe(200);
    expect((await call(crm.url, '/v1/api-keys', rotated)).status).toBe(200);
    // Routing reads keys through its cache (API_KEY_CACHE_MS): the new secret within seconds.
    await waitFor(async () => (await call(routing.url, '/v1/directory', rotated)).status === 200, 10_000, 'routing to take the rotated secret');
    expect((await call(routing.url, '/v1/directory', made)).status).toBe(200);
    expect(await read(row('api-keys', keyId).locator('[data-field="previous-valid-until"]'))).not.toBe('');
    await page.getByTestId('new-secret-done').click();
    expect(await page.content()).not.toContain(second);

    await page.getByTestId(`revoke-${keyId}`).click();
    await waitFor(async () => (await row('api-keys', keyId).getAttribute('data-status')) === 'revoked', 10_000, 'the key to show as revoked');
    expect((await call(crm.url, '/v1/api-keys', rotated)).status).toBe(401);
    expect((await call(crm.url, '/v1/api-keys', made)).status).toBe(401);
  });

  it('is refused by the browser from an origin the APIs do not name', async () => {
    // The same pages under another name (localhost, not 127.0.0.1) are another origin: the APIs
    // answer it without CORS headers, so the browser keeps the answer from the page.
    const other = await context.newPage();
    await other.goto(`${signaling.url.replace('127.0.0.1', 'localhost')}/`);
    const outcome = await other.evaluate(
      async ({ url, authorization }) =>
        fetch(url, { headers: { authorization } }).then(
          (r) => `status ${r.status}`,
          (e: Error) => `refused: ${e.name}`,
        ),
      { url: `${routing.url}/v1/directory`, authorization: basicAuth(DEMO_TENANT) },
    );
    expect(outcome).toBe('refused: TypeError');
    await other.close();
  });
});
