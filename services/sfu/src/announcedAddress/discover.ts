import { ErrorCode, GatewayError, backoffDelayMs, type Backoff, type Logger } from '@gateway/common';
import { publicAddressFromMetadata, type MetadataCloud } from './cloudMetadata.js';
import { checkAnnouncedAddress } from './publicAddress.js';
import { STUN_TIMINGS, queryStunServers, type StunServer, type StunTimings } from './stun.js';

/** Where the address put in ICE candidates comes from (SFU_ANNOUNCED_ADDRESS_SOURCE). */
export type AnnouncedAddressSource = 'explicit' | MetadataCloud | 'stun';

export type AnnouncedAddressSettings =
  | { source: 'explicit'; address: string }
  | { source: MetadataCloud; metadataUrl: string; allowPrivate: boolean }
  | { source: 'stun'; servers: StunServer[]; allowPrivate: boolean };

export interface AnnouncedAddress {
  address: string;
  source: AnnouncedAddressSource;
}

/** The code in the message of a start-up that found no address (the process's last line says it). */
export const ANNOUNCED_ADDRESS_UNAVAILABLE = 'announced_address_unavailable';

/** How often and how patiently the sources are asked before start-up fails. */
export interface AnnouncedAddressTimings {
  /** Rounds of questions, the first included. */
  attempts: number;
  /** The wait between rounds. */
  backoff: Backoff;
  /** The longest Retry-After of a metadata service honoured: a longer one is waited this long. */
  maxRetryAfterMs: number;
  /** One question to a metadata service, connection and answer included. */
  metadataTimeoutMs: number;
  /** The retransmissions of one STUN round. */
  stun: StunTimings;
}

/**
 * Four rounds over several seconds: a metadata service that throttles or restarts gets that
 * long. A metadata service is on the host and answers in milliseconds; the STUN retransmissions
 * are RFC 5389's, shortened for a start-up that must not hang (stun.ts).
 */
export const ANNOUNCED_ADDRESS_TIMINGS: AnnouncedAddressTimings = {
  attempts: 4,
  backoff: { initialMs: 250, maxMs: 2_000 },
  maxRetryAfterMs: 5_000,
  metadataTimeoutMs: 2_000,
  stun: STUN_TIMINGS,
};

/** Why one round failed; `final` when another round cannot change it (the cloud says the instance has no public address). */
class RoundFailure extends Error {
  constructor(
    message: string,
    readonly final = false,
    readonly retryAfterMs?: number,
  ) {
    super(message);
  }
}

/**
 * The address clients reach this node's media ports at, found once at start-up: as configured
 * (explicit), from the cloud's instance metadata, or by STUN from the media address. Every
 * answer is checked as hostile input; after a few rounds with backoff, or at once when the cloud
 * says there is no public address, start-up fails with `announced_address_unavailable` rather
 * than announcing an address no client can reach.
 */
export async function findAnnouncedAddress(
  settings: AnnouncedAddressSettings,
  media: { listenIp: string; port: number },
  log: Logger,
  timings: AnnouncedAddressTimings = ANNOUNCED_ADDRESS_TIMINGS,
): Promise<AnnouncedAddress> {
  if (settings.source === 'explicit') return { address: settings.address, source: 'explicit' };
  let last = '';
  for (let attempt = 0; attempt < timings.attempts; attempt++) {
    try {
      const address = await oneRound(settings, media, log, timings);
      return { address, source: settings.source };
    } catch (error) {
      if (!(error instanceof RoundFailure)) throw error;
      last = error.message;
      if (error.final) break;
      if (attempt + 1 < timings.attempts) {
        const waitMs = Math.max(backoffDelayMs(attempt, timings.backoff), Math.min(error.retryAfterMs ?? 0, timings.maxRetryAfterMs));
        log.warn({ source: settings.source, attempt: attempt + 1, waitMs, problem: error.message }, 'announced address not found yet; asking again');
        await new Promise((resolve) => setTimeout(resolve, waitMs));
      }
    }
  }
  throw new GatewayError(ErrorCode.UNAVAILABLE, `${ANNOUNCED_ADDRESS_UNAVAILABLE}: no address to announce from SFU_ANNOUNCED_ADDRESS_SOURCE=${settings.source}: ${last}`, {
    details: { reason: ANNOUNCED_ADDRESS_UNAVAILABLE, source: settings.source },
  });
}

async function oneRound(
  settings: Exclude<AnnouncedAddressSettings, { source: 'explicit' }>,
  media: { listenIp: string; port: number },
  log: Logger,
  timings: AnnouncedAddressTimings,
): Promise<string> {
  if (settings.source === 'stun') return stunRound(settings.servers, settings.allowPrivate, media, log, timings.stun);
  let text: string;
  try {
    text = await publicAddressFromMetadata(settings.source, settings.metadataUrl, timings.metadataTimeoutMs);
  } catch (error) {
    if (!(error instanceof GatewayError)) throw error;
    const retryAfterMs = typeof error.details.retryAfterMs === 'number' ? error.details.retryAfterMs : undefined;
    throw new RoundFailure(error.message, error.details.failure === 'no_public_address', retryAfterMs);
  }
  const checked = checkAnnouncedAddress(text, settings.allowPrivate);
  if ('problem' in checked) throw new RoundFailure(`${settings.source}: the metadata service's answer ${checked.problem}`);
  return checked.address;
}

async function stunRound(servers: readonly StunServer[], allowPrivate: boolean, media: { listenIp: string; port: number }, log: Logger, timings: StunTimings): Promise<string> {
  let outcomes: Awaited<ReturnType<typeof queryStunServers>>;
  try {
    outcomes = await queryStunServers(servers, { address: media.listenIp, port: media.port }, timings);
  } catch (error) {
    // The media port is taken or the listen address is not this host's: no round will do better.
    throw new RoundFailure(`stun: cannot send from ${media.listenIp}:${media.port} (${(error as NodeJS.ErrnoException).code ?? 'error'})`, true);
  }
  const answers: Array<{ server: string; address: string }> = [];
  const problems: string[] = [];
  for (const outcome of outcomes) {
    const server = `${outcome.server.host}:${outcome.server.port}`;
    if ('problem' in outcome) {
      problems.push(`${server}: ${outcome.problem}`);
      continue;
    }
    const checked = checkAnnouncedAddress(outcome.address, allowPrivate);
    if ('problem' in checked) {
      problems.push(`${server}: the mapped address ${checked.problem}`);
      continue;
    }
    // A NAT that changes ports still gets the address right, but clients then reach the media through peer-reflexive candidates only.
    if (outcome.port !== media.port) log.warn({ server, mediaPort: media.port, mappedPort: outcome.port }, 'the NAT in front of this node changes ports; media may not connect');
    answers.push({ server, address: checked.address });
  }
  if (problems.length > 0) log.warn({ problems }, 'some STUN servers gave no usable answer');
  if (answers.length === 0) throw new RoundFailure(`stun: no server gave a usable answer (${problems.join('; ')})`);
  const distinct = new Set(answers.map((a) => a.address));
  // Servers that answer differently mean a NAT that maps per destination or a server that lies: neither address can be trusted.
  if (distinct.size > 1) throw new RoundFailure(`stun: the servers disagree (${answers.map((a) => `${a.server} says ${a.address}`).join(', ')})`);
  return answers[0]!.address;
}
