import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TurnServer, turnserverInstalled } from '@gateway/testing';
import { turnCredential } from '../../services/signaling/src/participant/turnCredentials.js';
import { skipForMissing } from '../support/prerequisites.js';
import { freePort, waitFor } from '@gateway/testing';
import { openTurnAllocation, turnAllocate } from '../support/turnClient.js';

/**
 * Signaling's TURN credentials against a real coturn (the REST-API scheme, as `make up` and
 * production run it): one signed with the shared secret and not expired gets a relay; one signed
 * with another secret, or past its expiry, is refused with 401. The test client releases each
 * allocation it closes (test/support/turnClient.ts): one left alive held its 5-tuple, and a later
 * socket on the same port was answered 437, which once failed the rotation test.
 */
describe('TURN credentials at coturn', () => {
  let turn: TurnServer | undefined;
  const now = () => Math.floor(Date.now() / 1000);

  beforeAll(async () => {
    if (turnserverInstalled()) turn = await TurnServer.start();
  }, 30_000);

  afterAll(() => turn?.stop());

  it('allocates a relay for a valid credential, and refuses a forged or expired one', async (context) => {
    if (!turn) return skipForMissing(context, 'coturn (turnserver), installed by scripts/setup.sh');
    const valid = turnCredential(turn.secret, 'PA_valid', now() + 600);
    const allocated = await turnAllocate(turn.port, valid.username, valid.credential);
    expect(allocated).toMatchObject({ allocated: true });

    const forged = turnCredential(`${turn.secret}-not-it`, 'PA_forged', now() + 600);
    expect(await turnAllocate(turn.port, forged.username, forged.credential)).toMatchObject({ allocated: false, errorCode: 401 });

    const expired = turnCredential(turn.secret, 'PA_expired', now() - 60);
    expect(await turnAllocate(turn.port, expired.username, expired.credential)).toMatchObject({ allocated: false, errorCode: 401 });

    // A valid signature over another username (a later expiry written in) is no credential either.
    const stretched = `${now() + 86_400}:PA_valid`;
    expect(await turnAllocate(turn.port, stretched, valid.credential)).toMatchObject({ allocated: false, errorCode: 401 });
  }, 30_000);

  it('lets go of an allocation its client released: the same 5-tuple allocates again', async (context) => {
    if (!turn) return skipForMissing(context, 'coturn (turnserver), installed by scripts/setup.sh');
    const { username, credential } = turnCredential(turn.secret, 'PA_again', now() + 600);
    const localPort = await freePort();
    const first = await openTurnAllocation(turn.port, username, credential, 5_000, localPort);
    expect(first.outcome).toMatchObject({ allocated: true });
    await first.close();
    // Held, the 5-tuple would be answered 437 (Allocation Mismatch) for the allocation's 600 s;
    // released, coturn frees it within about a second. A refused one throws, which waitFor
    // retries and names if it times out.
    await waitFor(
      async () => {
        const again = await openTurnAllocation(turn!.port, username, credential, 5_000, localPort);
        await again.close();
        return again.outcome.allocated;
      },
      10_000,
      'a new allocation from the released 5-tuple',
    );
  }, 30_000);
});
