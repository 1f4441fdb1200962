// The footer's device controls: microphone, camera and screen share on and off.

import { showError } from './status.js';

/** How each source is turned on and off: the microphone and camera mute (they stay published), the screen share ends. */
const SET_ENABLED = {
  microphone: (room, on) => room.setMicrophoneEnabled(on),
  camera: (room, on) => room.setCameraEnabled(on),
  screen: (room, on) => room.setScreenShareEnabled(on),
};

/** Whether a source is on: published and not muted. */
function isOn(room, source) {
  const publication = room.localPublications.get(source);
  return !!publication && !publication.muted;
}

/** Buttons with data-toggle="camera|microphone|screen" turn that source on and off. */
export function bindToggles(room) {
  const buttons = [...document.querySelectorAll('[data-toggle]')];
  const refresh = () => {
    for (const button of buttons) {
      const source = button.dataset.toggle;
      const on = isOn(room, source);
      button.setAttribute('aria-pressed', String(on));
      button.disabled = button.dataset.busy === '1' || !room.grants.sources.includes(source);
      const label = button.querySelector('.label');
      if (label && button.dataset.on && button.dataset.off) label.textContent = on ? button.dataset.on : button.dataset.off;
    }
  };
  for (const button of buttons) {
    button.onclick = async () => {
      const source = button.dataset.toggle;
      button.dataset.busy = '1';
      refresh();
      try {
        await SET_ENABLED[source](room, !isOn(room, source));
      } catch (error) {
        // Cancelling the screen picker is not an error worth showing.
        if (!(source === 'screen' && error && error.code === 'PERMISSION_DENIED')) showError(error);
      }
      delete button.dataset.busy;
      refresh();
    };
  }
  for (const event of ['localTrackPublished', 'localTrackUnpublished', 'trackMuted', 'trackUnmuted', 'reconnected']) room.on(event, refresh);
  room.on('disconnected', () => buttons.forEach((b) => b.setAttribute('aria-pressed', 'false')));
  refresh();
}
