// Media on the page: an element per track, remote audio, and the local camera preview.

/** A <video> or <audio> playing one track; `data` becomes data-* attributes (test hooks). */
export function mediaElement(track, data) {
  const el = document.createElement(track.kind === 'video' ? 'video' : 'audio');
  el.autoplay = true;
  el.playsInline = true;
  // Video elements never play sound (audio has its own elements), which also lets them autoplay.
  if (track.kind === 'video') el.muted = true;
  el.srcObject = new MediaStream([track]);
  for (const [key, value] of Object.entries(data || {})) el.dataset[key] = value;
  return el;
}

export function elementTrack(el) {
  return el?.srcObject ? el.srcObject.getTracks()[0] : undefined;
}

/**
 * Plays every remote audio track through the room (so the audio output chosen applies) in a
 * hidden container; offers a button while the browser holds sound back until a tap.
 */
export function playRemoteAudio(room) {
  let sink = document.getElementById('audio-sink');
  if (!sink) {
    sink = document.createElement('div');
    sink.id = 'audio-sink';
    sink.hidden = true;
    document.body.append(sink);
  }
  const unlock = document.getElementById('unlock-audio');
  if (unlock) {
    room.on('audioPlaybackChanged', (canPlay) => (unlock.hidden = canPlay));
    unlock.onclick = () => room.startAudio().catch(() => undefined);
  }
  room.on('track', ({ participant, source, track }) => {
    if (track.kind !== 'audio') return;
    const el = room.attach(track);
    Object.assign(el.dataset, { participant: participant.id, source });
    sink.append(el);
  });
  room.on('trackEnded', ({ track }) => {
    for (const el of room.detach(track)) el.remove();
  });
  room.on('disconnected', () => sink.replaceChildren());
}

/** Shows the local camera in `container` (mirrored, as people expect to see themselves). */
export function bindLocalPreview(room, container) {
  const render = () => {
    const track = room.localTracks.get('camera');
    const current = container.querySelector('video');
    if (track && elementTrack(current) === track) return;
    if (current) current.remove();
    if (track) container.prepend(mediaElement(track, { local: '1', source: 'camera' }));
    container.classList.toggle('has-video', !!track);
  };
  // A muted camera has no live track (its capture is stopped) and shows the placeholder.
  for (const event of ['localTrackPublished', 'localTrackUnpublished', 'trackMuted', 'trackUnmuted', 'disconnected']) room.on(event, render);
  render();
}
