import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { installPacked, must, sh } from '../support/shell.js';

/**
 * The server SDK as a customer's backend gets it: packed, installed into an empty project, run
 * by Node (a token minted and a webhook verified with nothing but the package) and type-checked
 * against its shipped declarations; without them the check fails.
 */
const repo = path.resolve(import.meta.dirname, '../..');
const tsc = path.join(repo, 'node_modules/typescript/bin/tsc');

let work: string;
let app: string;
let packedFiles: string[];

const consumer = `import { AdminClient, mintJoinToken, RoomClient, WebhookReceiver, type WebhookEvent } from '@gateway/server-sdk';

const credentials = { tenant: 'acme', apiKey: 'acme-key', apiSecret: process.env.SECRET ?? '' };

export async function token(room: string): Promise<string> {
  return (await mintJoinToken(credentials, { room, identity: 'customer-1', role: 'end_user', ttlSeconds: 600 })).token;
}

export async function handle(body: string, headers: Record<string, string>): Promise<string> {
  const event: WebhookEvent = await new WebhookReceiver('whsec_c2VjcmV0').receive(body, headers);
  if (event.type === 'recording.ready') return event.data.recording.recordingId;
  return event.type;
}

export const clients = [new RoomClient({ url: 'https://gateway.example.com', credentials }), new AdminClient({ url: 'https://admin.example.com', credentials })];

// @ts-expect-error: a token needs its role (this line fails the check if the types were lost to any)
void mintJoinToken(credentials, { room: 'r', identity: 'i' });
`;

const script = `
import { createHmac } from 'node:crypto';
import { mintJoinToken, WebhookReceiver } from '@gateway/server-sdk';
const { token } = await mintJoinToken({ tenant: 'acme', apiKey: 'acme-key', apiSecret: 'x'.repeat(32) }, { room: 'r1', identity: 'u1', role: 'agent' });
const claims = JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString());
const key = Buffer.from('0123456789abcdef0123456789abcdef');
const body = JSON.stringify({ id: 'evt_1', type: 'webhook.test', createdAtMs: 1, data: { webhookId: 'WH_1' } });
const at = String(Math.floor(Date.now() / 1000));
const signature = 'v1,' + createHmac('sha256', key).update('evt_1.' + at + '.' + body).digest('base64');
const event = await new WebhookReceiver('whsec_' + key.toString('base64')).receive(body, { 'webhook-id': 'evt_1', 'webhook-timestamp': at, 'webhook-signature': signature });
console.log(JSON.stringify({ iss: claims.iss, tenant: claims.tenant, room: claims.room, type: event.type }));
`;

const compilerOptions = { target: 'ES2022', strict: true, noEmit: true, lib: ['ES2022'], module: 'NodeNext', moduleResolution: 'NodeNext', skipLibCheck: false };

beforeAll(async () => {
  work = mkdtempSync(path.join(tmpdir(), 'gateway-server-sdk-package-'));
  ({ app, files: packedFiles } = await installPacked(repo, '@gateway/server-sdk', work, 'server-sdk-consumer'));
  writeFileSync(path.join(app, 'src/main.ts'), consumer);
  writeFileSync(path.join(app, 'tsconfig.json'), JSON.stringify({ compilerOptions: { ...compilerOptions, types: ['node'], typeRoots: [path.join(repo, 'node_modules/@types')] }, include: ['src'] }));
}, 300_000);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('the packed server SDK', () => {
  it('holds the built module and its types, and depends only on what it names', () => {
    expect(packedFiles).toEqual(['README.md', 'dist/index.d.ts', 'dist/index.js', 'dist/index.js.map', 'package.json']);
    const manifest = JSON.parse(readFileSync(path.join(app, 'node_modules/@gateway/server-sdk/package.json'), 'utf8'));
    expect(manifest.private).toBeUndefined();
    expect(Object.keys(manifest.dependencies).sort()).toEqual(['jose', 'standardwebhooks']);
    const shipped = readFileSync(path.join(app, 'node_modules/@gateway/server-sdk/dist/index.js'), 'utf8') + readFileSync(path.join(app, 'node_modules/@gateway/server-sdk/dist/index.d.ts'), 'utf8');
    expect(shipped).not.toMatch(/from ['"]@gateway\//);
  });

  it('mints a token and verifies a webhook in Node, with nothing but the package', async () => {
    writeFileSync(path.join(app, 'run.mjs'), script);
    const output = await must(process.execPath, ['run.mjs'], app);
    expect(JSON.parse(output.trim().split('\n').at(-1)!)).toEqual({ iss: 'acme-key', tenant: 'acme', room: 'r1', type: 'webhook.test' });
  });

  it('type-checks a consumer against the shipped declarations', async () => {
    const { ok, output } = await sh(process.execPath, [tsc, '-p', 'tsconfig.json'], app);
    expect(output).toBe('');
    expect(ok).toBe(true);
  }, 120_000);

  it('fails the type check when the declarations are missing', async () => {
    rmSync(path.join(app, 'node_modules/@gateway/server-sdk/dist/index.d.ts'));
    const { ok, output } = await sh(process.execPath, [tsc, '-p', 'tsconfig.json'], app);
    expect(ok).toBe(false);
    expect(output).toMatch(/TS7016|TS2307/);
  }, 120_000);
});
