import { createHmac } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ErrorCode, fileReloads } from '@gateway/common';
import { readSignalingConfig } from '../config.js';
import { silentLog } from '../testing/fakes.js';
import { TurnCredentials, iceServersFor, turnCredential } from './turnCredentials.js';

const secret = 'a-turn-secret-of-at-least-32-characters';

describe('TURN credentials (coturn REST-API scheme)', () => {
  it('sign "<expiry>:<id>" with HMAC-SHA1 of the shared secret, base64', () => {
    // The vector computed here apart from the module, as coturn computes it.
    const expected = createHmac('sha1', secret).update('1700000000:PA_abc').digest('base64');
    expect(turnCredential(secret, 'PA_abc', 1_700_000_000)).toEqual({ username: '1700000000:PA_abc', credential: expected });
    // A fixed vector (openssl dgst -sha1 -hmac secret -binary | base64), so a change of hash or encoding on both sides at once still shows.
    expect(turnCredential('secret', 'user', 1)).toEqual({ username: '1:user', credential: createHmac('sha1', 'secret').update('1:user').digest('base64') });
    expect(turnCredential('secret', 'user', 1).credential).toBe('2bAU+Ug5rOCG/OSDF/Vya99JHNs=');
  });

  it('expire the TTL after now, name the participant and nothing else, and are none without TURN', () => {
    const turn = { secret, urls: ['turn:127.0.0.1:3478?transport=udp', 'turns:turn.example:443?transport=tcp'], ttlSeconds: 3600 };
    const now = 1_700_000_000_500;
    const [server, ...rest] = iceServersFor(turn, 'PA_xyz', now);
    expect(rest).toEqual([]);
    expect(server!.urls).toEqual(turn.urls);
    expect(server!.username).toBe(`${1_700_000_000 + 3600}:PA_xyz`);
    expect(server!.credential).toBe(createHmac('sha1', secret).update(server!.username).digest('base64'));
    // Another secret signs another credential.
    expect(iceServersFor({ ...turn, secret: `${secret}-other` }, 'PA_xyz', now)[0]!.credential).not.toBe(server!.credential);
    expect(iceServersFor(undefined, 'PA_xyz', now)).toEqual([]);
  });
});

describe('TURN configuration', () => {
  const dir = mkdtempSync(join(tmpdir(), 'gateway-turn-config-'));
  const secretFile = join(dir, 'secret');
  writeFileSync(secretFile, `${secret}\n`);
  const shortFile = join(dir, 'short');
  writeFileSync(shortFile, 'too-short');
  const base = { NATS_NKEY_SEED_FILE: join(dir, 'unused.nk') };
  const read = (env: Record<string, string>) => readSignalingConfig({ ...base, ...env });

  it('hands out no TURN server without a secret (the default)', () => {
    expect(read({}).turn).toBeUndefined();
  });

  it('reads the secret from its file, the URLs and the TTL', () => {
    const { turn } = read({ SIGNALING_TURN_SECRET_FILE: secretFile, SIGNALING_TURN_URLS: 'turn:127.0.0.1:3478?transport=udp, turns:turn.example.com:443?transport=tcp' });
    expect(turn).toMatchObject({ secret, urls: ['turn:127.0.0.1:3478?transport=udp', 'turns:turn.example.com:443?transport=tcp'], ttlSeconds: 3600 });
    expect(turn?.file?.path).toBe(secretFile);
    expect(read({ SIGNALING_TURN_SECRET_FILE: secretFile, SIGNALING_TURN_URLS: 'turn:[::1]:3478', SIGNALING_TURN_CREDENTIAL_TTL_SECONDS: '600' }).turn?.ttlSeconds).toBe(600);
  });

  it.each([
    [{ SIGNALING_TURN_URLS: 'turn:127.0.0.1:3478' }, 'SIGNALING_TURN_URLS: set SIGNALING_TURN_SECRET_FILE'],
    [{ SIGNALING_TURN_SECRET_FILE: secretFile }, 'SIGNALING_TURN_URLS: at least one URL'],
    [{ SIGNALING_TURN_SECRET_FILE: secretFile, SIGNALING_TURN_URLS: 'http://turn.example' }, 'SIGNALING_TURN_URLS'],
    [{ SIGNALING_TURN_SECRET_FILE: secretFile, SIGNALING_TURN_URLS: 'turn:127.0.0.1:3478?transport=sctp' }, 'SIGNALING_TURN_URLS'],
    [{ SIGNALING_TURN_SECRET_FILE: secretFile, SIGNALING_TURN_URLS: 'turn:a', SIGNALING_TURN_CREDENTIAL_TTL_SECONDS: '10' }, 'SIGNALING_TURN_CREDENTIAL_TTL_SECONDS'],
    [{ SIGNALING_TURN_SECRET_FILE: join(dir, 'missing'), SIGNALING_TURN_URLS: 'turn:a' }, 'SIGNALING_TURN_SECRET_FILE: cannot be read'],
    [{ SIGNALING_TURN_SECRET_FILE: shortFile, SIGNALING_TURN_URLS: 'turn:a' }, 'SIGNALING_TURN_SECRET_FILE: must hold a secret of at least 32'],
  ])('refuses %j, never echoing the secret', (env, problem) => {
    let thrown: unknown;
    try {
      read(env);
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toMatchObject({ code: ErrorCode.CONFIG_INVALID });
    const message = (thrown as Error).message;
    expect(message).toContain(problem);
    expect(message).not.toContain(secret);
    expect(message).not.toContain('too-short');
  });
});

describe('TURN secret rotation', () => {
  const signedWith = (key: string, username: string) => createHmac('sha1', key).update(username).digest('base64');

  it('signs with a changed secret at once, and keeps the last good one when the file goes bad', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gateway-turn-rotation-'));
    const file = join(dir, 'secret');
    writeFileSync(file, `${secret}\n`);
    const settings = readSignalingConfig({ NATS_NKEY_SEED_FILE: join(dir, 'unused.nk'), SIGNALING_TURN_SECRET_FILE: file, SIGNALING_TURN_URLS: 'turn:127.0.0.1:3478' }).turn;
    const outcomes: string[] = [];
    const reloaded = (source: string) => outcomes.push(`${source}:reloaded`);
    const rejected = (source: string) => outcomes.push(`${source}:rejected`);
    fileReloads.on('reloaded', reloaded);
    fileReloads.on('rejected', rejected);
    const turn = TurnCredentials.start(settings, silentLog);
    try {
      const current = () => turn.iceServersFor('PA_rot')[0]!;
      expect(current().credential).toBe(signedWith(secret, current().username));

      const next = 'the-next-turn-secret-of-32-characters-or-more';
      writeFileSync(file, next);
      await turn.check();
      expect(current().credential).toBe(signedWith(next, current().username));

      // Too short, then not printable: refused, the secret in use stays.
      for (const bad of ['short', `${'x'.repeat(20)} ${'y'.repeat(20)}`]) {
        writeFileSync(file, bad);
        await turn.check();
        expect(current().credential).toBe(signedWith(next, current().username));
      }
      expect(outcomes.filter((o) => o.startsWith('turn-secret:'))).toEqual(['turn-secret:reloaded', 'turn-secret:rejected', 'turn-secret:rejected']);
    } finally {
      turn.close();
      fileReloads.off('reloaded', reloaded);
      fileReloads.off('rejected', rejected);
    }
  });
});
