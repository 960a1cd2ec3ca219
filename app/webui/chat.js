// The chat page. It talks to this server's own OpenAI API by relative URLs (so it works behind a
// reverse proxy at a sub-path), keeps conversations and settings in localStorage and the API key,
// if the server asks for one, in sessionStorage (this browser session only). Answers are Markdown
// (marked), with any HTML or image a model writes shown as text, then sanitized (DOMPurify):
// nothing a model writes runs or fetches anything.
import { Marked } from "./vendor/marked.esm.js";
import DOMPurify from "./vendor/purify.es.mjs";

const $ = (id) => document.getElementById(id);
const escapeHtml = (text) => text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const markdown = new Marked({ renderer: { html: ({ text }) => escapeHtml(text), image: ({ raw }) => escapeHtml(raw) } });
const newId = () => Date.now().toString(36) + Math.random().toString(36).slice(2, 8);

const saved = (key, fallback) => JSON.parse(localStorage.getItem(key) || "null") ?? fallback;
let chats = saved("llamba.chats", []);            // [{id, title, model, messages: [{role, content, ...}]}], newest first
let settings = saved("llamba.settings", {});      // {model, system, temperature, max_tokens}
let current = chats.find((c) => c.id === localStorage.getItem("llamba.current")) || null;
let models = {};                                  // id -> the /v1/models entry
let controller = null;                            // the running answer's, to stop it

function save() {
  localStorage.setItem("llamba.chats", JSON.stringify(chats));
  localStorage.setItem("llamba.settings", JSON.stringify(settings));
  localStorage.setItem("llamba.current", current?.id || "");
}

// --- the API ------------------------------------------------------------------------------------

function headers() {
  const key = sessionStorage.getItem("llamba.key");
  return { "Content-Type": "application/json", ...(key ? { Authorization: `Bearer ${key}` } : {}) };
}

async function errorText(response) {
  const body = await response.json().catch(() => ({}));
  return body.error?.message || `${response.status} ${response.statusText}`;
}

// A request; on 401 the key dialog shows the server's message and the request is made again.
async function api(path, body, signal) {
  for (;;) {
    const response = await fetch(path, { method: body ? "POST" : "GET", headers: headers(), signal,
                                         body: body && JSON.stringify(body) });
    if (response.status !== 401) return response;
    await askKey(await errorText(response));
  }
}

function askKey(message) {
  return new Promise((resolve) => {
    const dialog = $("key-dialog");
    $("key-message").textContent = message;
    $("key").value = "";
    dialog.onclose = () => { sessionStorage.setItem("llamba.key", $("key").value.trim()); resolve(); };
    dialog.showModal();
  });
}

// --- models and settings ------------------------------------------------------------------------

async function loadModels() {
  const response = await api("v1/models");
  if (!response.ok) { $("model-status").textContent = await errorText(response); return; }
  const list = (await response.json()).data || [];
  models = Object.fromEntries(list.map((m) => [m.id, m]));
  const select = $("model"), chosen = select.value || settings.model;
  select.replaceChildren(...list.map((m) => new Option(m.id + (m.meta?.loaded === false ? " (not loaded)" : ""), m.id)));
  if (chosen in models) select.value = chosen;
  showModel();
}

function showModel() {
  const meta = models[$("model").value]?.meta || {};
  $("model-status").textContent = meta.error ? `cannot be loaded: ${meta.error}`
    : meta.loaded === false ? "not loaded yet" : meta.context_length ? `loaded, context ${meta.context_length} tokens` : "";
  const defaults = meta.sampling_defaults || {};  // blank settings leave the model's defaults
  $("temperature").placeholder = defaults.temperature ?? "";
  $("max-tokens").placeholder = defaults.max_tokens ?? "";
}

async function chooseModel() {
  settings.model = $("model").value;
  save();
  showModel();
  if (models[settings.model]?.meta?.loaded === false) {
    $("model-status").textContent = `loading ${settings.model}…`;
    const response = await api("models/load", { model: settings.model });
    if (!response.ok) { $("model-status").textContent = await errorText(response); return; }
    await loadModels();
  }
}

function readSettings() {
  settings.system = $("system").value;
  settings.temperature = $("temperature").value;
  settings.max_tokens = $("max-tokens").value;
  save();
}

// --- the conversation ---------------------------------------------------------------------------

function render() {
  $("chats").replaceChildren(...chats.map((chat) => {
    const item = document.createElement("li"), open = document.createElement("button"), remove = document.createElement("button");
    item.className = chat === current ? "current" : "";
    open.className = "open";
    open.textContent = chat.title;
    open.onclick = () => { if (!controller) { current = chat; save(); render(); } };
    remove.textContent = "×";
    remove.setAttribute("aria-label", `Delete chat: ${chat.title}`);
    remove.onclick = () => deleteChat(chat);
    item.append(open, remove);
    return item;
  }));
  const messages = current?.messages || [];
  $("messages").replaceChildren(...messages.map((message, i) => messageView(message, i, i === messages.length - 1)));
  $("messages").scrollTop = $("messages").scrollHeight;
}

function messageView(message, index, last) {
  const view = document.createElement("div"), content = document.createElement("div"), actions = document.createElement("div");
  view.className = `message ${message.role}${message.error ? " error" : ""}`;
  content.className = "content";
  actions.className = "actions";
  view.append(content);
  if (message.role === "user") {
    content.textContent = message.content;
    actions.append(button("Edit", () => edit(view, index)));
  } else {
    fill(content, message);
    view.append(usageLine(message));
    if (last) actions.append(button("Regenerate", regenerate));
  }
  if (!controller) view.append(actions);
  return view;
}

function button(label, action) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  b.onclick = action;
  return b;
}

function fill(content, message) {
  const parts = [];
  if (message.reasoning) {
    parts.push(`<details class="reasoning"><summary>Thinking</summary>${escapeHtml(message.reasoning)}</details>`);
  }
  parts.push(markdown.parse(message.content || ""));
  content.innerHTML = DOMPurify.sanitize(parts.join(""));
  for (const pre of content.querySelectorAll("pre")) {
    const copy = button("Copy", () => navigator.clipboard?.writeText(pre.querySelector("code")?.textContent || pre.textContent));
    copy.className = "copy";
    copy.setAttribute("aria-label", "Copy code");
    pre.append(copy);
  }
}

function usageLine(message) {
  const line = document.createElement("div");
  line.className = "usage";
  const u = message.usage;
  if (u) {
    const rate = u.seconds > 0 ? ` · ${(u.completion_tokens / u.seconds).toFixed(1)} tokens/s` : "";
    line.textContent = `${u.completion_tokens} tokens${rate} · ${u.cached_tokens} cached prompt tokens`;
  } else if (message.stopped) {
    line.textContent = "stopped";
  }
  return line;
}

function edit(view, index) {
  const box = document.createElement("textarea"), content = view.querySelector(".content");
  box.value = current.messages[index].content;
  box.setAttribute("aria-label", "Edit message");
  content.replaceChildren(box);
  view.querySelector(".actions").replaceChildren(
    button("Send", () => {
      if (!box.value.trim() || controller) return;  // (an empty edit keeps the conversation as it is)
      current.messages = current.messages.slice(0, index);
      ask(box.value);
    }),
    button("Cancel", render));
  box.focus();
}

function regenerate() {
  if (current.messages.at(-1)?.role === "assistant") current.messages.pop();
  answer();
}

function deleteChat(chat) {
  chats = chats.filter((c) => c !== chat);
  if (current === chat) current = null;
  save();
  render();
}

function newChat() {
  if (controller) return;
  current = null;
  save();
  render();
  $("prompt").focus();
}

function ask(text) {
  if (!text.trim() || controller) return;
  if (!current) {
    current = { id: newId(), title: text.slice(0, 60), messages: [] };
    chats.unshift(current);
  }
  current.messages.push({ role: "user", content: text });
  answer();
}

// Streams the answer to the conversation so far into a new assistant message.
async function answer() {
  readSettings();
  const chat = current, model = $("model").value, wasLoaded = models[model]?.meta?.loaded !== false;
  const history = chat.messages.filter((m) => !m.error).map(({ role, content }) => ({ role, content }));
  const message = { role: "assistant", content: "", reasoning: "" };
  chat.messages.push(message);
  chat.model = model;
  controller = new AbortController();
  generating(true);
  render();
  if (!wasLoaded) $("model-status").textContent = `loading ${model}…`;
  const content = $("messages").lastElementChild.querySelector(".content");
  const body = { model, stream: true, stream_options: { include_usage: true },
                 messages: [...(settings.system ? [{ role: "system", content: settings.system }] : []), ...history] };
  if (settings.temperature !== "") body.temperature = Number(settings.temperature);
  if (settings.max_tokens !== "") body.max_tokens = Number(settings.max_tokens);
  let first = null, pending = false;
  try {
    const response = await api("v1/chat/completions", body, controller.signal);
    if (!response.ok) throw new Error(await errorText(response));
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      const events = (buffer + value).replace(/\r\n?/g, "\n").split("\n\n");  // (SSE lines may end in \r\n)
      buffer = events.pop();
      for (const event of events) {
        const data = event.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trim()).join("");
        if (!data || data === "[DONE]") continue;
        const chunk = JSON.parse(data);
        if (chunk.error) throw new Error(chunk.error.message);
        const delta = chunk.choices?.[0]?.delta || {};
        if (delta.content || delta.reasoning_content) {
          first ??= performance.now();
          message.content += delta.content || "";
          message.reasoning += delta.reasoning_content || "";
          if (!pending) {  // at most one rendering per frame
            pending = true;
            requestAnimationFrame(() => { pending = false; fill(content, message); });
          }
        }
        if (chunk.usage) {
          message.usage = { completion_tokens: chunk.usage.completion_tokens,
                            cached_tokens: chunk.usage.prompt_tokens_details?.cached_tokens || 0,
                            seconds: first ? (performance.now() - first) / 1000 : 0 };
        }
      }
    }
  } catch (e) {
    if (e.name === "AbortError") message.stopped = true;
    else { message.error = true; message.content += (message.content ? "\n\n" : "") + `**Error:** ${e.message}`; }
  } finally {
    controller = null;
    generating(false);
    save();
    if (current === chat) render();
    if (!wasLoaded) loadModels();
  }
}

function generating(on) {
  $("send").hidden = on;
  $("stop").hidden = !on;
}

// --- wiring -------------------------------------------------------------------------------------

$("system").value = settings.system || "";
$("temperature").value = settings.temperature || "";
$("max-tokens").value = settings.max_tokens || "";
$("composer").onsubmit = (e) => { e.preventDefault(); const text = $("prompt").value; $("prompt").value = ""; ask(text); };
$("prompt").onkeydown = (e) => {
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); $("composer").requestSubmit(); }
};
document.addEventListener("keydown", (e) => { if (e.key === "Escape" && controller) controller.abort(); });
$("stop").onclick = () => controller?.abort();
$("new-chat").onclick = newChat;
$("model").onchange = chooseModel;
for (const id of ["system", "temperature", "max-tokens"]) $(id).onchange = readSettings;
$("settings-toggle").onclick = () => {
  const open = $("settings").hidden;
  $("settings").hidden = !open;
  $("settings-toggle").setAttribute("aria-expanded", String(open));
};
render();
loadModels();
