// Recording: what everyone sees, and what agents allowed to record can do.

import { showError } from './status.js';

/**
 * The recording indicator every participant sees (the law in many places requires telling
 * people they are recorded), and for agents allowed to record, the controls: record / stop,
 * and pause for card numbers (PCI).
 */
export function bindRecording(room) {
  let pill = document.getElementById('recording');
  if (!pill) {
    pill = document.createElement('span');
    pill.id = 'recording';
    pill.className = 'pill recording';
    pill.hidden = true;
    document.querySelector('header.bar .spacer').after(pill);
  }
  const controls = document.querySelector('footer.controls');
  let record;
  let pause;
  if (room.grants.canRecord && controls && !document.getElementById('record')) {
    record = Object.assign(document.createElement('button'), { type: 'button', id: 'record' });
    pause = Object.assign(document.createElement('button'), { type: 'button', id: 'pause-recording', hidden: true });
    controls.insertBefore(record, document.getElementById('leave'));
    controls.insertBefore(pause, document.getElementById('leave'));
    record.addEventListener('click', () => {
      const running = room.recording && room.recording.state !== 'stopped';
      (running ? room.stopRecording() : room.startRecording()).catch(showError);
    });
    pause.addEventListener('click', () => {
      (room.recording && room.recording.state === 'paused' ? room.resumeRecording() : room.pauseRecording()).catch(showError);
    });
  }
  const render = () => {
    const state = room.recording ? room.recording.state : 'stopped';
    const running = state !== 'stopped';
    document.body.dataset.recording = state;
    pill.hidden = !running;
    pill.textContent = state === 'paused' ? 'Recording paused' : '● Recording';
    pill.classList.toggle('paused', state === 'paused');
    if (record) {
      record.textContent = running ? 'Stop recording' : 'Record';
      pause.hidden = !running;
      pause.textContent = state === 'paused' ? 'Resume recording' : 'Pause (PCI)';
    }
  };
  room.on('recording', render);
  render();
}
