import { forgedTokens, splicedResumeTokens, validParams, type KnownIds, type Rng } from './generators.js';
import { FuzzConnection } from './FuzzConnection.js';
import type { FuzzStats, FuzzTarget } from './fuzzTypes.js';

/**
 * What signaling must refuse, tried in the middle of the fuzzing: ids of another room, forged
 * join tokens and spliced resume tokens. Each one accepted is counted, with what it was.
 */

/** The methods that name an id, and the kind of id each names. */
const ID_METHODS: Record<string, keyof KnownIds> = {
  connectTransport: 'transportId',
  restartIce: 'transportId',
  getStats: 'transportId',
  pauseProducer: 'producerId',
  resumeProducer: 'producerId',
  closeProducer: 'producerId',
  consume: 'producerId',
  resumeConsumer: 'consumerId',
  pauseConsumer: 'consumerId',
  setPreferredLayers: 'consumerId',
  redactMessage: 'messageId',
  answerSmartAction: 'actionId',
  artifactUrl: 'artifactId',
};

/**
 * Sends, as request `id` on a connection in `room`, a method naming an id harvested in another
 * room's session (`foreign`): it must fail. Returns false, having sent nothing, when that session
 * had no id of the kind the drawn method names.
 */
export async function tryForeignId(
  rng: Rng,
  connection: FuzzConnection,
  id: number,
  room: string,
  tokens: { join: string; resume: string },
  foreign: { room: string; ids: KnownIds },
  stats: FuzzStats,
): Promise<boolean> {
  const method = rng.pick(Object.keys(ID_METHODS));
  const params = validParams(rng, method, foreign.ids, tokens);
  const key = ID_METHODS[method]!;
  if (!foreign.ids[key]) return false;
  const answer = await connection.request(id, method, params, 5_000);
  stats.frames++;
  if (!answer.error) stats.foreignIdsAccepted.push(`${method} with a ${key} of room ${foreign.room} from room ${room}`);
  return true;
}

/** Forged join tokens and spliced resume tokens: each must be refused. */
export async function tryForgeries(rng: Rng, target: FuzzTarget, stats: FuzzStats, live: Array<{ room: string; token: string }>, nextId: () => number): Promise<void> {
  const valid = await target.mint({ room: `forge-${rng.int(1e6)}`, identity: 'victim', role: 'end_user' });
  const attempts: Array<{ what: string; method: 'join' | 'resume'; params: Record<string, unknown> }> = forgedTokens(rng, valid, target.tenant, target.other).map((f) => ({
    what: `join token: ${f.what}`,
    method: 'join',
    params: { token: f.token, protocolVersion: 1 },
  }));
  for (let i = 0; i + 1 < live.length && i < 6; i += 2) {
    for (const token of splicedResumeTokens(live[i]!.token, live[i + 1]!.token)) attempts.push({ what: 'spliced resume token', method: 'resume', params: { resumeToken: token } });
  }
  for (const attempt of attempts) {
    let connection: FuzzConnection;
    try {
      connection = await FuzzConnection.open(rng.pick(target.wsUrls), stats);
    } catch {
      stats.livenessFailures.push('a WebSocket could not be opened');
      continue;
    }
    const answer = await connection.request(nextId(), attempt.method, attempt.params);
    stats.frames++;
    if (answer.join || answer.resume) stats.forgedAccepted.push(attempt.what);
    connection.ws.terminate();
  }
}
