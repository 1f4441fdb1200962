import { mintJoinToken, type MintRequest } from '../../services/signaling/src/auth/tokens.js';
import { DEMO_TENANT } from '../../services/signaling/src/config.js';

/** A join token of the built-in demo tenant, as a customer's backend would mint it. */
export async function demoToken(request: MintRequest): Promise<string> {
  return (await mintJoinToken(DEMO_TENANT, request)).token;
}
