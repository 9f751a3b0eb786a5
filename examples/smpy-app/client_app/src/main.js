import "./style.css";

const root = document.getElementById("app");
if (root) {
  root.dataset.frontend = "ready";
  const note = document.createElement("p");
  note.className = "frontend-note";
  note.textContent = `Front end loaded for release ${root.dataset.release || "dev"}.`;
  root.appendChild(note);
}
