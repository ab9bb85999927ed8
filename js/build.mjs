// Bundles one ES module (+ one CSS file) per widget into curator_widgets/static/.
// Everything (Leaflet, regl-scatterplot) is inlined: no CDN at run time.
import * as esbuild from "esbuild";
import { mkdirSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const outdir = resolve(here, "../curator_widgets/static");
const dev = process.argv.includes("--dev");
const watch = process.argv.includes("--watch");

export const WIDGETS = ["region_picker", "embedding_view", "gallery", "swipe_labeler"];

const options = {
  entryPoints: Object.fromEntries(WIDGETS.map((w) => [w, resolve(here, `src/${w}.ts`)])),
  bundle: true,
  format: "esm",
  platform: "browser",
  target: ["es2020", "chrome100", "firefox100", "safari15"],
  outdir,
  minify: !dev,
  sourcemap: dev ? "inline" : false,
  legalComments: "eof",
  loader: { ".png": "dataurl", ".svg": "dataurl" },
  logLevel: "info",
};

mkdirSync(outdir, { recursive: true });
if (watch) {
  const ctx = await esbuild.context(options);
  await ctx.watch();
  console.log(`watching; writing to ${outdir}`);
} else {
  await esbuild.build(options);
}
