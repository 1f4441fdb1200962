import { TypedEmitter } from '@gateway/common';
import type { PodApiFailure } from './kubernetes/PodApi.js';
import type { Room } from './Room.js';

/**
 * What an SFU node tells monitoring (metrics), apart from the events that drive it, as
 * mediasoup's `observer`: the metrics listen here and never reach into the node.
 */
export type SfuObserverEvents = {
  /** A room opened; its own observer says when it closes. */
  newroom: [room: Room];
  workerdied: [index: number];
  /** The node started draining. */
  draining: [];
  /** The Pod's deletion cost was written (DeletionCost.ts). */
  deletioncost: [cost: number];
  /** A write of the Pod's deletion cost failed, and why. */
  deletioncostfailed: [failure: PodApiFailure];
  /** The node is stopping: nothing more to sample. */
  close: [];
};

export class SfuObserver extends TypedEmitter<SfuObserverEvents> {}
