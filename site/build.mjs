// Copies the xterm.js distribution files the terminal page needs from
// node_modules into static/vendor, where the Go package embeds them.
// Run with `npm ci && npm run build` (the Makefile's `site` target).
import { copyFileSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "static", "vendor");
mkdirSync(out, { recursive: true });
const files = [
  ["@xterm/xterm/lib/xterm.js", "xterm.js"],
  ["@xterm/xterm/css/xterm.css", "xterm.css"],
  ["@xterm/addon-fit/lib/addon-fit.js", "addon-fit.js"],
  ["@xterm/xterm/LICENSE", "xterm.LICENSE"],
];
for (const [from, to] of files) {
  copyFileSync(join(here, "node_modules", from), join(out, to));
  console.log(`static/vendor/${to}`);
}
