import type { types } from 'mediasoup';

/** The shapes a room, its pipes and its taps share. */

export type TrackSource = 'camera' | 'microphone' | 'screen' | 'screen_audio';

export interface MediaAppData extends types.AppData {
  participantId: string;
  source?: TrackSource;
  direction?: 'send' | 'recv';
  /** On an imported producer: the node it comes from. */
  importedFrom?: string;
  /** On a consumer: the transport it sends on. */
  transportId?: string;
}

/** Where a pipe listens: the node's cluster-internal address and port range. */
export interface PipeListen {
  listenIp: string;
  announcedAddress?: string;
  portMin: number;
  portMax: number;
}

/** One end of a pipe, as the other node is told of it. */
export interface PipeEndpoint {
  ip: string;
  port: number;
  srtpParameters: types.SrtpParameters;
}
