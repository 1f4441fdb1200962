import { Chat } from './chat/Chat.js';
import type { Emit } from './events.js';
import { Playback } from './media/Playback.js';
import { Publisher } from './media/Publisher.js';
import { Subscriber } from './media/Subscriber.js';
import { TrackStatsReader } from './media/TrackStatsReader.js';
import { Transports } from './media/Transports.js';
import { Recording } from './recording/Recording.js';
import { Roster } from './Roster.js';
import { RoomSync } from './session/RoomSync.js';
import { SignalingClient } from './signaling/SignalingClient.js';
import { signalingHttpBase } from './signaling/urls.js';
import { SmartActions } from './smartActions/SmartActions.js';
import type { ConnectOptions, Grants, RoomEvents, Source } from './types.js';

/** What the parts need of the room that holds them: its events, whether it is open, and where the join's own state goes. */
export interface RoomSelf {
  emit: Emit<RoomEvents>;
  isClosed(): boolean;
  /** Throws ROOM_CLOSED once the room was left or disconnected. */
  assertOpen(): void;
  /** Someone else (or we) speak loudest now. */
  setActiveSpeaker(participantId: string): void;
  /** The room's name, the token's grants and the active speaker, from each join answer. */
  joined(state: { name: string; grants: Grants; activeSpeakerId: string }): void;
}

/**
 * The parts a room is made of (roster, transports, publisher, subscriber, recording, chat, Smart
 * Actions, playback, statistics, the sync with the server), how they are tied together, and
 * what they do when the signaling connection goes and comes back. Each
 * is given only what it needs of the others, through functions read when called, since several
 * need each other and none may depend on the order they are made in.
 */
export class RoomParts {
  readonly client: SignalingClient;
  readonly roster: Roster;
  readonly transports: Transports;
  readonly publisher: Publisher;
  readonly subscriber: Subscriber;
  readonly recorder: Recording;
  readonly chat: Chat;
  readonly actions: SmartActions;
  readonly session: RoomSync;
  readonly playback: Playback;
  readonly trackStats: TrackStatsReader;

  constructor(options: ConnectOptions, room: RoomSelf) {
    // Where uploads and attachment URLs go: the signaling server's HTTP side.
    const httpBase = signalingHttpBase(options.url);
    const client = new SignalingClient({ ...options, restore: (response) => this.session.sync(response) });
    this.client = client;
    const { emit, isClosed } = room;
    const assertOpen = () => room.assertOpen();
    const announceHeldBack = () => this.session.announce();
    const localParticipantId = () => this.roster.local.id;

    this.subscriber = new Subscriber({
      signaling: client,
      isClosed,
      recvTransport: () => this.transports.recv,
      recvRtpCapabilities: () => this.transports.recvRtpCapabilities,
      participant: (id) => this.roster.others.get(id),
      emit,
      adaptiveStream: options.adaptiveStream !== false,
    });
    this.roster = new Roster({ tracks: this.subscriber, emit });
    this.publisher = new Publisher({
      signaling: client,
      sendTransport: () => this.transports.send,
      localParticipant: () => this.roster.local,
      emit,
      dynacast: options.dynacast !== false,
    });
    // A closed transport takes what it carried along: consumers (received again on a new one), or producers.
    const onClose = (direction: 'send' | 'recv') => (direction === 'recv' ? this.subscriber.detachAll() : this.publisher.forgetProducers());
    this.transports = new Transports({ signaling: client, handlerFactory: options.handlerFactory, iceTransportPolicy: options.iceTransportPolicy ?? 'all', isClosed, onClose });
    this.recorder = new Recording({ signaling: client, participantById: (id) => this.roster.byId(id), emit });
    const isOwn = (id: string) => this.roster.isOwn(id);
    const participantOf = (id: string | undefined) => this.roster.participantOf(id);
    this.chat = new Chat({ signaling: client, assertOpen, announceHeldBack, isOwn, participantOf, localParticipantId, emit });
    this.playback = new Playback(emit, (track) => [...this.publisher.localTracks.values()].includes(track));
    const liveLocalTrack = (source: Source) => this.publisher.liveTrack(source);
    this.actions = new SmartActions({ signaling: client, httpBase, assertOpen, announceHeldBack, localParticipantId, liveLocalTrack, emit });
    this.trackStats = new TrackStatsReader({ publisher: this.publisher, subscriber: this.subscriber, localParticipantId });
    const { roster, transports, publisher, subscriber, recorder, chat, actions } = this;
    this.session = new RoomSync({
      isClosed,
      roster,
      transports,
      publisher,
      subscriber,
      recorder,
      chat,
      actions,
      emit,
      setActiveSpeaker: (id) => room.setActiveSpeaker(id),
      joined: (state) => room.joined(state),
    });

    client.on('notification', (event) => this.session.notify(event));
    client.on('reconnecting', () => {
      // Signaling's restore restarts ICE on the transports it keeps.
      this.transports.cancelIceRestarts();
      // What the SFU says of our layers while away is lost, so every layer goes on until it
      // says again; now, not once reconnected, so that what it says during the restore holds.
      this.publisher.resetLayers();
    });
    // What was wished of received tracks while away reaches the server.
    client.on('reconnected', () => void this.subscriber.resync());
  }

  /** Releases what the parts hold: media elements, transports, received and captured tracks. */
  release(): void {
    this.playback.clear();
    this.transports.closeAll();
    this.subscriber.clear();
    this.publisher.stopAll();
  }
}
