import type { types } from 'mediasoup';
import { TypedEmitter } from '@gateway/common';
import type { MediaAppData } from './mediaTypes.js';

/** What one receiver of a producer asks of its simulcast layers. */
export interface LayerReceiver {
  /** Paused at the SFU (its video is hidden, the app disabled it, a PCI pause of a tap): it receives nothing. */
  paused: boolean;
  /** The layer it prefers; undefined is the top one (mediasoup's default, and what pipes and taps take). */
  preferredSpatialLayer: number | undefined;
}

/**
 * The highest layer of a producer with `layerCount` simulcast layers that any receiver takes:
 * the top one clamped, 0 when nobody receives it or everyone is paused. The lowest layer is
 * always wanted, so a receiver that comes or resumes gets a picture at once, before the
 * publisher hears that it needs more.
 */
export function wantedSpatialLayer(layerCount: number, receivers: Iterable<LayerReceiver>): number {
  const top = Math.max(0, layerCount - 1);
  let wanted = 0;
  for (const receiver of receivers) {
    if (receiver.paused) continue;
    wanted = Math.max(wanted, Math.min(top, receiver.preferredSpatialLayer ?? top));
  }
  return wanted;
}

type RoomLayersEvents = {
  /** The highest layer anyone receives of a producer of this node changed (dynacast). */
  changed: [participantId: string, producerId: string, maxSpatialLayer: number];
};

/** What the room holds, as the layer count reads it. */
export interface LayerSources {
  producers(): Iterable<types.Producer<MediaAppData>>;
  /** Every consumer of the room's producers: the participants', the pipes' to other nodes, the recording taps'. */
  consumers(): Iterable<types.Consumer<MediaAppData>>;
}

/**
 * Dynacast's side on the SFU: for each simulcast producer that lives here, the highest layer any
 * of its consumers wants, announced when it changes, so the publisher stops encoding layers that
 * nobody receives. A producer starts with every layer wanted, as its publisher starts sending.
 * Imported producers are left to their own node, which counts the pipe to here as a receiver
 * of the top layer.
 */
export class RoomLayers extends TypedEmitter<RoomLayersEvents> {
  /** What was last announced per producer. */
  private readonly announced = new Map<string, number>();

  constructor(private readonly sources: LayerSources) {
    super();
  }

  /** Counts again after anything that may change what is wanted: a consumer made, closed, paused, resumed, or its preference. */
  update(): void {
    const receivers = new Map<string, LayerReceiver[]>();
    for (const consumer of this.sources.consumers()) {
      if (consumer.closed) continue;
      const list = receivers.get(consumer.producerId) ?? [];
      list.push({ paused: consumer.paused, preferredSpatialLayer: consumer.type === 'simulcast' ? consumer.preferredLayers?.spatialLayer : undefined });
      receivers.set(consumer.producerId, list);
    }
    const live = new Set<string>();
    for (const producer of this.sources.producers()) {
      if (producer.type !== 'simulcast' || producer.appData.importedFrom || producer.closed) continue;
      live.add(producer.id);
      const layerCount = producer.rtpParameters.encodings?.length ?? 1;
      const wanted = wantedSpatialLayer(layerCount, receivers.get(producer.id) ?? []);
      if ((this.announced.get(producer.id) ?? layerCount - 1) === wanted) continue;
      this.announced.set(producer.id, wanted);
      this.safeEmit('changed', producer.appData.participantId, producer.id, wanted);
    }
    for (const producerId of this.announced.keys()) if (!live.has(producerId)) this.announced.delete(producerId);
  }
}
