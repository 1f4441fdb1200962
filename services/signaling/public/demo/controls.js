// The footer's device controls: microphone, camera and screen share on and off.

import { showError } from './status.js';

/** Buttons with data-toggle="camera|microphone|screen" publish and unpublish that source. */
export function bindToggles(room) {
  const buttons = [...document.querySelectorAll('[data-toggle]')];
  const refresh = () => {
    for (const button of buttons) {
      const source = button.dataset.toggle;
      const on = room.localTracks.has(source);
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
        if (room.localTracks.has(source)) await room.unpublish(source);
        else await room.publish({ [source]: true });
      } catch (error) {
        // Cancelling the screen picker is not an error worth showing.
        if (!(source === 'screen' && error && error.code === 'PERMISSION_DENIED')) showError(error);
      }
      delete button.dataset.busy;
      refresh();
    };
  }
  room.on('localTrackPublished', refresh);
  room.on('localTrackUnpublished', refresh);
  room.on('disconnected', () => buttons.forEach((b) => b.setAttribute('aria-pressed', 'false')));
  refresh();
}
