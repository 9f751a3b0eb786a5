// Builds dist/: index.html and assets/app.<hash>.js, the API's address
// (TASKBOARD_API_URL, set at build time) written into the script.
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";

const apiUrl = process.env.TASKBOARD_API_URL || "http://127.0.0.1:8000";
const script = readFileSync("src/app.js", "utf8").replace("__API_URL__", JSON.stringify(apiUrl));
const hash = createHash("sha256").update(script).digest("hex").slice(0, 12);
const name = `app.${hash}.js`;

rmSync("dist", { recursive: true, force: true });
mkdirSync("dist/assets", { recursive: true });
writeFileSync(`dist/assets/${name}`, script);
writeFileSync("dist/index.html", readFileSync("src/index.html", "utf8").replace("__SCRIPT__", `assets/${name}`));
console.log(`built dist/index.html and dist/assets/${name} for ${apiUrl}`);
