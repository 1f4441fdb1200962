// The supervisor page: signs in with a supervisor's desk token (#desk=<token>, or pasted) and
// shows every queue's figures and every agent's state, live from the desk's `queues` events.

import { clock, hashParams, percent, statusLabel } from './desk.js';
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

function renderAgents(agents) {
  const rows = [...agents]
    .sort((a, b) => (a.name || a.agentId).localeCompare(b.name || b.agentId))
    .map((a) => {
      const tr = document.createElement('tr');
      tr.dataset.agent = a.agentId;
      tr.dataset.status = a.status;
      const status = cell('status', statusLabel(a.status) + (a.status === 'away' && a.reason ? ` · ${a.reason}` : ''));
      status.className = `status ${a.status}`;
      tr.append(cell('name', a.name || a.agentId), status, cell('contacts', String(a.contactIds.length)));
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

export function startSupervisor() {
  const input = $('desk-token');
  const params = hashParams();
  if (params.get('desk')) input.value = params.get('desk');
  document.querySelectorAll('#error .close').forEach((b) => (b.onclick = hideError));
  setState('idle');
  let desk;

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
