import type http from 'node:http';
import { z } from 'zod';
import {
  ErrorCode,
  GatewayError,
  dataMessagePayload,
  hasBody,
  participantMetadata,
  participantName,
  methodNotAllowed,
  parseWith,
  readJsonRequest,
  refuseQuery,
  schemas,
  sendJson,
  type Tenant,
} from '@gateway/common';
import { RateLimiter } from '../limits/RateLimiter.js';
import type { RoomService } from '../rooms/RoomService.js';

/** A data message's body: its payload (16 KiB of UTF-8 at most) and the JSON around it. */
const MAX_DATA_BODY_BYTES = 32 * 1024;
const BODY_SHAPE = { maxDepth: 2, maxNodes: 8 };

const room = schemas.room();
const id = schemas.id();
const dataMessageBodySchema = z.object({ topic: id.optional(), payload: dataMessagePayload }).strict();
const participantChangeSchema = z
  .object({ name: participantName.optional(), metadata: participantMetadata.optional() })
  .strict()
  .refine((change) => change.name !== undefined || change.metadata !== undefined, 'name or metadata is required');

type Params = { room: string; participantId: string; trackId: string };
type Operation = (tenant: Tenant, params: Params, req: http.IncomingMessage, res: http.ServerResponse) => Promise<void>;

interface Resource {
  /** The path below /v1/rooms, `{name}` for a parameter. */
  pattern: RegExp;
  names: Array<keyof Params>;
  /** By HTTP method: the operation (its name is the OpenAPI operationId and the metric's label). */
  methods: Partial<Record<string, { name: string; run: Operation }>>;
  /** The methods whose requests carry a JSON body (any other request must come without one). */
  bodyFor?: string[];
}

/**
 * The room API, for tenants' backends (authenticated like /v1/tokens: HTTP Basic apiKey:apiSecret;
 * a tenant only ever sees and touches its own rooms):
 *   GET    /v1/rooms                                                   rooms with participants, and how many
 *   DELETE /v1/rooms/{room}                                            end the room: everyone removed
 *   GET    /v1/rooms/{room}/participants                               ids, roles, identities, tracks
 *   DELETE /v1/rooms/{room}/participants/{participantId}               remove one (its client closes with 4005)
 *   PATCH  /v1/rooms/{room}/participants/{participantId}               {name?, metadata?}: the room is told
 *   POST   /v1/rooms/{room}/participants/{participantId}/tracks/{trackId}/mute   pause a published track
 *   POST   /v1/rooms/{room}/recording                                  start recording
 *   DELETE /v1/rooms/{room}/recording                                  stop recording
 *   POST   /v1/rooms/{room}/data                                       {topic?, payload}: to everyone, not stored
 * Path parameters, query (none is taken) and bodies (only POST …/data takes one, JSON) are
 * checked by schema before anything happens. The contract is docs/openapi/signaling.yaml.
 */
/** The room API's rate per tenant and replica: far above what a backend steering its calls needs. */
const ROOM_API_RATE = { perSecond: 20, burst: 40 };

export function createRoomRoutes(
  rooms: RoomService,
  /** Each operation's outcome: OK or the error code (gateway_signaling_room_api_requests_total). */
  observe: (operation: string, code: string) => void,
  /** Each tenant's requests on this replica: sustained per second, and at once. */
  limits: { perSecond: number; burst: number } = ROOM_API_RATE,
): (tenant: Tenant, req: http.IncomingMessage, res: http.ServerResponse, url: URL) => Promise<void> {
  const op = (name: string, run: Operation) => ({ name, run });
  const resources: Resource[] = [
    {
      pattern: /^$/,
      names: [],
      methods: { GET: op('listRooms', async (tenant, _p, _req, res) => sendJson(res, 200, { rooms: await rooms.listRooms(tenant.name) })) },
    },
    {
      pattern: /^\/([^/]+)$/,
      names: ['room'],
      methods: { DELETE: op('endRoom', async (tenant, p, _req, res) => sendJson(res, 200, { room: p.room, removed: await rooms.endRoom(tenant.name, p.room) })) },
    },
    {
      pattern: /^\/([^/]+)\/participants$/,
      names: ['room'],
      methods: { GET: op('listParticipants', async (tenant, p, _req, res) => sendJson(res, 200, { room: p.room, participants: await rooms.listParticipants(tenant.name, p.room) })) },
    },
    {
      pattern: /^\/([^/]+)\/participants\/([^/]+)$/,
      names: ['room', 'participantId'],
      bodyFor: ['PATCH'],
      methods: {
        DELETE: op('removeParticipant', async (tenant, p, _req, res) => {
          await rooms.removeParticipant(tenant.name, p.room, p.participantId);
          sendJson(res, 204);
        }),
        PATCH: op('updateParticipant', async (tenant, p, req, res) => {
          const body = parseWith(participantChangeSchema, await readJsonRequest(req, 'the change', MAX_DATA_BODY_BYTES, BODY_SHAPE), 'the body');
          sendJson(res, 200, { participant: await rooms.updateParticipant(tenant.name, p.room, p.participantId, body) });
        }),
      },
    },
    {
      pattern: /^\/([^/]+)\/participants\/([^/]+)\/tracks\/([^/]+)\/mute$/,
      names: ['room', 'participantId', 'trackId'],
      methods: { POST: op('muteTrack', async (tenant, p, _req, res) => sendJson(res, 200, { track: await rooms.muteTrack(tenant.name, p.room, p.participantId, p.trackId) })) },
    },
    {
      pattern: /^\/([^/]+)\/recording$/,
      names: ['room'],
      methods: {
        POST: op('startRecording', async (tenant, p, _req, res) => sendJson(res, 201, recordingView(await rooms.startRecording(tenant.name, p.room)))),
        DELETE: op('stopRecording', async (tenant, p, _req, res) => sendJson(res, 200, recordingView(await rooms.stopRecording(tenant.name, p.room)))),
      },
    },
    {
      pattern: /^\/([^/]+)\/data$/,
      names: ['room'],
      bodyFor: ['POST'],
      methods: {
        POST: op('sendData', async (tenant, p, req, res) => {
          const body = parseWith(dataMessageBodySchema, await readJsonRequest(req, 'the message', MAX_DATA_BODY_BYTES, BODY_SHAPE), 'the body');
          sendJson(res, 202, await rooms.sendData(tenant.name, p.room, body));
        }),
      },
    },
  ];

  const limiters = new Map<string, RateLimiter>();
  return async (tenant, req, res, url) => {
    const rest = url.pathname.slice('/v1/rooms'.length);
    for (const resource of resources) {
      const match = resource.pattern.exec(rest);
      if (!match) continue;
      const operation = resource.methods[req.method ?? ''];
      if (!operation) throw methodNotAllowed(Object.keys(resource.methods));
      // A backend in a loop must not flood its rooms (a data message reaches every participant).
      const limiter = limiters.get(tenant.name) ?? limiters.set(tenant.name, new RateLimiter(limits.perSecond, limits.burst)).get(tenant.name)!;
      const waitMs = limiter.take();
      if (waitMs > 0) throw new GatewayError(ErrorCode.RATE_LIMITED, `at most ${limits.perSecond} room API requests a second per tenant`, { details: { retryAfterMs: waitMs } });
      try {
        const params = pathParams(resource.names, match.slice(1));
        refuseQuery(url);
        if (!resource.bodyFor?.includes(req.method ?? '') && hasBody(req)) throw new GatewayError(ErrorCode.BAD_REQUEST, 'this request takes no body');
        await operation.run(tenant, params, req, res);
        observe(operation.name, 'OK');
      } catch (error) {
        observe(operation.name, GatewayError.from(error).code);
        throw error;
      }
      return;
    }
    throw new GatewayError(ErrorCode.NOT_FOUND, 'not found');
  };
}

/** The path's parameters, percent-decoded and checked: a room name, participant and track ids. */
function pathParams(names: Array<keyof Params>, values: string[]): Params {
  const params: Params = { room: '', participantId: '', trackId: '' };
  names.forEach((name, i) => {
    let value: string;
    try {
      value = decodeURIComponent(values[i] ?? '');
    } catch {
      throw new GatewayError(ErrorCode.BAD_REQUEST, `the path's ${name} is not valid percent-encoding`);
    }
    params[name] = parseWith(name === 'room' ? room : id, value, `the path's ${name}`);
  });
  return params;
}

function recordingView(status: { recordingId: string; state: string }) {
  return { recordingId: status.recordingId, state: status.state };
}
