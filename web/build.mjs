// Bundles the pages' scripts and styles into gateway/static/ (or the folder given as the
// first argument, which `make web-check` uses to compare a fresh build with the committed
// one). esbuild's output is deterministic for a given lockfile, so that compare is exact.
import { build } from "esbuild";
import { fileURLToPath } from "node:url";
import path from "node:path";

const here = path.dirname(fileURLToPath(import.meta.url));
const outdir = path.resolve(process.argv[2] || path.join(here, "..", "gateway", "static"));

await build({
  absWorkingDir: here,
  entryPoints: {
    watch: "src/watch.js",
    upload: "src/upload.js",
    home: "src/home.js",
    app: "src/app.css",
  },
  outdir,
  bundle: true,
  minify: true,
  format: "iife",
  platform: "browser",
  target: ["chrome100", "firefox100", "safari15"],
  legalComments: "eof",
  sourcemap: false,
  logLevel: "warning",
});
console.log(`built web assets into ${outdir}`);
