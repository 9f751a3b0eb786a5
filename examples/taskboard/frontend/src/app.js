const API = __API_URL__;
let token = null;

async function call(path, options = {}) {
  const headers = { "Content-Type": "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  const response = await fetch(API + path, { ...options, headers });
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return response.json();
}

async function refresh() {
  const { latest } = await call("/tasks");
  document.getElementById("tasks").replaceChildren(
    ...latest.map((task) => Object.assign(document.createElement("li"), { textContent: task.title })));
}

document.getElementById("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  ({ token } = await call("/login", { method: "POST", body: JSON.stringify(Object.fromEntries(form)) }));
  document.getElementById("add").hidden = false;
});

document.getElementById("add").addEventListener("submit", async (event) => {
  event.preventDefault();
  await call("/tasks", { method: "POST", body: JSON.stringify({ title: new FormData(event.target).get("title") }) });
  event.target.reset();
  refresh();
});

refresh();
