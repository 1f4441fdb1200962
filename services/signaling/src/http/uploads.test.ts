import { describe, expect, it } from 'vitest';
import { ErrorCode } from '@gateway/common';
import { sessionFor } from '../testing/fakes.js';
import { authorizeUpload } from './uploads.js';

describe('upload authorisation', () => {
  it('names the participant whose resume token is the bearer, from the stored record', async () => {
    const { session, resumeToken, store } = sessionFor({ grant: { role: 'end_user', identity: 'ext-7' } });
    await session.save();
    expect(await authorizeUpload(store, `Bearer ${resumeToken}`)).toEqual({ tenant: 'demo', room: 'room-1', participantId: 'PA_1', identity: 'ext-7', role: 'end_user' });
  });

  it('refuses a missing, malformed, wrong or unknown token alike', async () => {
    const { session, resumeToken, store } = sessionFor();
    await session.save();
    const [tenant, room, participantId] = resumeToken.split('.');
    for (const authorization of [undefined, '', resumeToken, 'Bearer nonsense', `Bearer ${tenant}.${room}.${participantId}.wrongsecret`, `Bearer ${tenant}.${room}.PA_other.secret`]) {
      await expect(authorizeUpload(store, authorization)).rejects.toMatchObject({ code: ErrorCode.UNAUTHENTICATED });
    }
  });
});
