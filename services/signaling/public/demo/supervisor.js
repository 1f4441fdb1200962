// The supervisor page: signs in with a supervisor's desk token (#desk=<token>, or pasted) and
// shows every queue's figures and every agent's state, live from the desk's `queues` events; a
// contact in a call can be monitored, whispered into (the agent alone hears) or barged into.

import { clock, hashParams, percent, statusLabel } from './desk.js';
import { mediaElement, playRemoteAudio } from './media.js';
import { hideError, setState, showError } from './status.js';

const $ = (id) => document.getElementById(id);

function cell(field, text) {
  const td = document.createElement('td');
  td.dataset.field = field;
  td.textContent = text;
  return td;
}

function renderQueues(queues, sinceSeconds) {
  const rows = queues.map((q) => {
    const tr = document.createElement('tr');
    tr.dataset.queue = q.queueId;
    tr.append(
      cell('name', q.name || q.queueId),
      cell('waiting', String(q.waiting)),
      cell('longest-wait', clock(q.waiting > 0 ? q.longestWaitSeconds + sinceSeconds : 0)),
      cell('offered', String(q.offered)),
      cell('connected', String(q.connected)),
      cell('service-level', percent(q.serviceLevel)),
      cell('abandon-rate', percent(q.abandonRate)),
      cell('estimated-wait', q.estimatedWaitSeconds ? clock(q.estimatedWaitSeconds) : '–'),
    );
    tr.title = `Target: answered within ${q.serviceLevelSeconds} s. Today: ${q.answeredToday} answered, ${q.abandonedToday} abandoned.`;
    return tr;
  });
  $('queues-body').replaceChildren(...rows);
  $('queues-empty').hidden = rows.length > 0;
}

const MODES = [
  ['monitor', 'Monitor', 'Watching and listening; nobody in the call sees you.'],
  ['whisper', 'Whisper', 'The agent hears you; the customer does not.'],
  ['barge', 'Barge in', 'You are in the call: everyone sees and hears you.'],
];

/** Buttons to join each of an agent's contacts in a call, in each mode (handled by the page's click listener). */
function liveCell(agent) {
  const td = cell('live', '');
  for (const contactId of agent.rooms.length > 0 ? agent.contactIds : []) {
    for (const [mode, label, hint] of MODES) {
      const button = document.createElement('button');
      button.type = 'button';
      button.textContent = label;
      button.title = hint;
      Object.assign(button.dataset, { contact: contactId, mode, testid: `supervise-${mode}` });
      td.append(button);
    }
  }
  return td;
}

function renderAgents(agents) {
  const rows = [...agents]
    .sort((a, b) => (a.name || a.agentId).localeCompare(b.name || b.agentId))
    .map((a) => {
      const tr = document.createElement('tr');
      tr.dataset.agent = a.agentId;
      tr.dataset.status = a.status;
      const status = cell('status', statusLabel(a.status) + (a.status === 'away' && a.reason ? ` · ${a.reason}` : ''));
      status.className = `status ${a.status}`;
      tr.append(cell('name', a.name || a.agentId), status, cell('contacts', String(a.contactIds.length)), liveCell(a));
      return tr;
    });
  $('agents-body').replaceChildren(...rows);
  $('agents-empty').hidden = rows.length > 0;
}

/** The latest view, and when it came: the longest waits go on counting between views (which come only on changes). */
let latest;
let receivedAtMs = 0;

function render(view) {
  latest = view;
  receivedAtMs = Date.now();
  renderQueues(view.queues, 0);
  renderAgents(view.agents);
  const at = new Date(view.atMs);
  $('updated').textContent = `Updated ${at.toLocaleTimeString()}`;
  $('updated').dataset.atMs = String(view.atMs);
}

/** The call being watched: one room at a time, joined again to change modes. */
function watcher(getDesk) {
  let room;
  let watching;

  function render() {
    $('watch').hidden = !room;
    const mode = MODES.find(([m]) => m === watching?.mode);
    $('watch-mode').textContent = mode ? mode[1] : '';
    $('watch-hint').textContent = mode ? mode[2] : '';
  }

  function showVideos(joined) {
    const videos = $('watch-videos');
    videos.replaceChildren();
    joined.on('track', ({ participant, source, track }) => {
      if (track.kind !== 'video') return;
      const figure = document.createElement('figure');
      Object.assign(figure.dataset, { participant: participant.id, source });
      const caption = document.createElement('figcaption');
      caption.textContent = `${participant.name || participant.identity} · ${source}`;
      figure.append(mediaElement(track, { participant: participant.id, source }), caption);
      videos.append(figure);
    });
    joined.on('trackEnded', ({ track }) => {
      for (const figure of videos.querySelectorAll('figure')) if (figure.querySelector('video')?.srcObject?.getTracks()[0] === track) figure.remove();
    });
    joined.on('participantLeft', (participant) => {
      for (const figure of videos.querySelectorAll(`figure[data-participant="${CSS.escape(participant.id)}"]`)) figure.remove();
    });
  }

  async function leave() {
    const current = room;
    room = undefined;
    watching = undefined;
    window.room = undefined;
    render();
    if (current) await current.leave().catch(() => undefined);
  }

  /** Joins the contact's call in `mode`, leaving the one watched before (a mode change is a new join). */
  async function supervise(contactId, mode) {
    const desk = getDesk();
    if (!desk) return;
    hideError();
    await leave();
    try {
      const join = await desk.supervise(contactId, mode);
      const joined = await Gateway.connect({ url: location.origin, token: join.token });
      room = joined;
      watching = { contactId, mode };
      window.room = joined;
      playRemoteAudio(joined);
      showVideos(joined);
      joined.on('disconnected', () => {
        if (room !== joined) return;
        room = undefined;
        watching = undefined;
        render();
      });
      render();
      if (mode === 'whisper') await joined.publish({ microphone: true });
      if (mode === 'barge') await joined.publish({ microphone: true, camera: true });
    } catch (error) {
      showError(error);
      render();
    }
  }

  $('watch-leave').onclick = () => leave();
  $('agents-body').addEventListener('click', (event) => {
    const button = event.target.closest('button[data-mode]');
    if (button) supervise(button.dataset.contact, button.dataset.mode);
  });
  return { leave };
}

export function startSupervisor() {
  const input = $('desk-token');
  const params = hashParams();
  if (params.get('desk')) input.value = params.get('desk');
  document.querySelectorAll('#error .close').forEach((b) => (b.onclick = hideError));
  setState('idle');
  let desk;
  const watch = watcher(() => desk);

  async function signIn() {
    const token = input.value.trim();
    if (!token || desk) return;
    hideError();
    setState('connecting');
    try {
      // Gateway: the SDK bundle (/sdk.js), loaded before the page's modules.
      desk = await Gateway.supervisor({ url: location.origin, token });
    } catch (error) {
      desk = undefined;
      setState('disconnected');
      showError(error);
      return;
    }
    window.desk = desk;
    setState('connected');
    desk.on('queues', render);
    desk.on('error', (error) => {
      desk = undefined;
      watch.leave();
      setState('disconnected');
      showError(error);
    });
    await desk.queueView().catch(showError);
  }

  setInterval(() => latest && renderQueues(latest.queues, Math.floor((Date.now() - receivedAtMs) / 1000)), 1000);

  $('join-form').addEventListener('submit', (event) => {
    event.preventDefault();
    signIn();
  });
  if (input.value) signIn();
}
