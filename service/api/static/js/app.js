// Hash routes: #/ (jobs), #/jobs/{id}[?start=&end=] (a job), #/jobs/{id}/steps/{step} (a step).

import { getToken, onUnauthorized, setToken } from "./api.js";
import { clear, h } from "./dom.js";
import { JobPage } from "./pages/job.js";
import { JobsPage } from "./pages/jobs.js";
import { StepPage } from "./pages/step.js";

const root = document.getElementById("app");
let current = null; // {key, page}

function route() {
  const raw = location.hash.replace(/^#/, "") || "/";
  const [path, search = ""] = raw.split("?");
  const params = new URLSearchParams(search);
  let m;
  if ((m = /^\/jobs\/(\d+)\/steps\/(\d+)\/?$/.exec(path))) {
    return { key: `step:${m[1]}:${m[2]}`, make: () => new StepPage(root, { id: Number(m[1]), step: Number(m[2]) }), title: `job ${m[1]} · step ${m[2]}` };
  }
  if ((m = /^\/jobs\/(\d+)\/?$/.exec(path))) {
    return { key: `job:${m[1]}`, params, make: () => new JobPage(root, { id: Number(m[1]), params }), title: `job ${m[1]}` };
  }
  return { key: "jobs", make: () => new JobsPage(root), title: "jobs" };
}

function show() {
  const next = route();
  document.title = `gradbook · ${next.title}`;
  if (current && current.key === next.key && current.page.update) {
    current.page.update({ params: next.params });
    return;
  }
  if (current) current.page.destroy();
  clear(root);
  window.scrollTo(0, 0);
  current = { key: next.key, page: next.make() };
  for (const a of document.querySelectorAll(".topnav a")) a.classList.toggle("active", next.key === "jobs");
}

function tokenBox() {
  const box = document.getElementById("auth");
  const input = h("input", { type: "password", placeholder: "API token", "aria-label": "API token", value: getToken() });
  const form = h("form", { class: "inline-form", onsubmit: (e) => {
    e.preventDefault();
    setToken(input.value.trim());
    box.hidden = true;
    if (current) current.page.destroy();
    current = null;
    show();
  } }, h("span", {}, "This server needs an API token: "), input, h("button", { type: "submit" }, "Use token"));
  clear(box).append(form);
  box.hidden = false;
}

onUnauthorized(tokenBox);
window.addEventListener("hashchange", show);
show();
