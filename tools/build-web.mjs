// Build the gateway's web assets into build/web (served at /assets/ by the gateway), offline:
// only packages from node_modules (pinned in package-lock.json) and the sources in web/.
//
//   node tools/build-web.mjs [outdir]
//
// portal.js and console.js are bundled by esbuild with viem (SIWE, EIP-712, ABI encoding);
// Swagger UI is copied from swagger-ui-dist. Nothing is fetched and no URL of another host is
// written into the output (the gateway's Content-Security-Policy would refuse it anyway).
import { build } from "esbuild";
import { cpSync, mkdirSync, readFileSync, rmSync, writeFileSync, readdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const out = resolve(root, process.argv[2] ?? "build/web");
const src = join(root, "web");
const swagger = join(root, "node_modules", "swagger-ui-dist");

rmSync(out, { recursive: true, force: true });
mkdirSync(join(out, "docs"), { recursive: true });

await build({
  entryPoints: { portal: join(src, "portal", "portal.js"), console: join(src, "console", "console.js") },
  outdir: out,
  bundle: true,
  format: "esm",
  target: ["es2022"],
  minify: true,
  sourcemap: false,
  legalComments: "linked",
  logLevel: "warning",
});

for (const file of ["style.css"]) cpSync(join(src, "shared", file), join(out, file));
for (const page of ["portal", "console"]) cpSync(join(src, page, "index.html"), join(out, `${page}.html`));
for (const file of ["swagger-ui.css", "swagger-ui-bundle.js", "favicon-32x32.png"]) {
  cpSync(join(swagger, file), join(out, "docs", file));
}
cpSync(join(src, "docs", "docs-init.js"), join(out, "docs", "docs-init.js"));
// swagger-ui-bundle.js ends with a source-map comment naming a file we do not ship.
const bundle = join(out, "docs", "swagger-ui-bundle.js");
writeFileSync(bundle, readFileSync(bundle, "utf8").replace(/\n\/\/# sourceMappingURL=\S+\s*$/, "\n"));

const version = JSON.parse(readFileSync(join(root, "package-lock.json"), "utf8")).packages;
const manifest = {
  built_from: Object.fromEntries(
    ["esbuild", "viem", "swagger-ui-dist"].map((name) => [name, version[`node_modules/${name}`]?.version]),
  ),
  files: readdirSync(out, { recursive: true }).map(String).sort(),
};
writeFileSync(join(out, "manifest.json"), JSON.stringify(manifest, null, 2) + "\n");
console.log(`web assets built in ${out}`);
